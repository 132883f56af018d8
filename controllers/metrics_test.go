package controllers

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

// TestNumbersGaugeCountsStatesPerAccount: twilio_numbers counts an account's
// numbers by the status and reason of Ready and Synced, and forgets label
// sets that no number has any more.
func TestNumbersGaugeCountsStatesPerAccount(t *testing.T) {
	ns, acct, e164, _ := newScenario(t, withURL(originalURL))
	createNumber(t, ns, "ok", acct, e164, nil)
	createNumber(t, ns, "missing", acct, "+19995550001", nil)
	waitReady(t, ns, "ok", metav1.ConditionTrue, twiliov1.ReasonConfigured)
	waitReady(t, ns, "missing", metav1.ConditionFalse, twiliov1.ReasonNumberNotFound)

	states := &numberStates{reader: k8s, interval: time.Hour}
	value := func(labels ...string) float64 { return testutil.ToFloat64(numbersGauge.WithLabelValues(labels...)) }
	g := NewWithT(t)
	g.Eventually(func(g Gomega) {
		states.refresh(context.Background())
		g.Expect(value(ns, acct, "Ready", "True", twiliov1.ReasonConfigured)).To(Equal(1.0))
		g.Expect(value(ns, acct, "Ready", "False", twiliov1.ReasonNumberNotFound)).To(Equal(1.0))
		g.Expect(value(ns, acct, "Synced", "True", twiliov1.ReasonSynced)).To(Equal(2.0))
	}, wait, tick).Should(Succeed())

	deleteNumber(t, ns, "missing")
	waitGone(t, ns, "missing")
	states.refresh(context.Background())
	g.Expect(states.seen).NotTo(HaveKey([5]string{ns, acct, "Ready", "False", twiliov1.ReasonNumberNotFound}), "a state no number has is dropped")
	g.Expect(value(ns, acct, "Synced", "True", twiliov1.ReasonSynced)).To(Equal(1.0))
}
