package controllers

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

// numbersGauge counts TwilioPhoneNumbers per account by the status and
// reason of their Ready and Synced conditions. Its cardinality is bounded by
// accounts × the API's reasons, never by numbers.
var numbersGauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "twilio_numbers",
	Help: "TwilioPhoneNumbers per TwilioAccount by condition (Ready, Synced), status and reason; exported by the leader, refreshed every 30 s.",
}, []string{"namespace", "account", "condition", "status", "reason"})

func init() {
	metrics.Registry.MustRegister(numbersGauge)
}

// numberStates refreshes numbersGauge from the manager's cache. Only the
// leader runs it, so a sum over replicas counts every number once.
type numberStates struct {
	reader   client.Reader
	interval time.Duration
	seen     map[[5]string]bool
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (n *numberStates) NeedLeaderElection() bool { return true }

// Start implements manager.Runnable.
func (n *numberStates) Start(ctx context.Context) error {
	t := time.NewTicker(n.interval)
	defer t.Stop()
	for {
		n.refresh(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (n *numberStates) refresh(ctx context.Context) {
	var list twiliov1.TwilioPhoneNumberList
	if err := n.reader.List(ctx, &list); err != nil {
		log.FromContext(ctx).Error(err, "List TwilioPhoneNumbers for the twilio_numbers metric")
		return
	}
	counts := map[[5]string]int{}
	for i := range list.Items {
		obj := &list.Items[i]
		for _, typ := range []string{twiliov1.ConditionReady, twiliov1.ConditionSynced} {
			status, reason := "Unknown", "NotReconciled"
			if c := meta.FindStatusCondition(obj.Status.Conditions, typ); c != nil {
				status, reason = string(c.Status), c.Reason
			}
			counts[[5]string{obj.Namespace, obj.Spec.AccountRef.Name, typ, status, reason}]++
		}
	}
	for k := range n.seen {
		if _, ok := counts[k]; !ok {
			numbersGauge.DeleteLabelValues(k[:]...)
		}
	}
	n.seen = map[[5]string]bool{}
	for k, v := range counts {
		numbersGauge.WithLabelValues(k[:]...).Set(float64(v))
		n.seen[k] = true
	}
}
