package controllers

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

// kstatus (sigs.k8s.io/cli-utils, read by kubectl wait --for=condition,
// Flux and kpt) reads abnormal-true conditions: Reconciling=True is
// InProgress, Stalled=True is Failed, neither (with the generation observed)
// is Current. Both are derived from Ready and Synced when status is written,
// so they always agree with them.

// stalledNumberReasons are the Ready=False reasons of a number that no retry
// fixes: someone has to act.
var stalledNumberReasons = map[string]bool{
	twiliov1.ReasonConflict:             true,
	twiliov1.ReasonNumberNotFound:       true,
	twiliov1.ReasonTrunkAttached:        true,
	twiliov1.ReasonNoAgent:              true,
	twiliov1.ReasonAgentNotAllowed:      true,
	twiliov1.ReasonWebhookUnreachable:   true,
	twiliov1.ReasonContested:            true,
	twiliov1.ReasonPurchaseNotAllowed:   true,
	twiliov1.ReasonPurchaseLimitReached: true,
	twiliov1.ReasonNumberUnavailable:    true,
	twiliov1.ReasonPurchaseLost:         true,
}

// stalledAccountReasons are the Ready=False reasons of an account that no
// retry fixes.
var stalledAccountReasons = map[string]bool{
	twiliov1.ReasonInvalidCredentials: true,
	twiliov1.ReasonSecretNotFound:     true,
	twiliov1.ReasonSecretInvalid:      true,
	twiliov1.ReasonTwilioRejected:     true,
	twiliov1.ReasonConflict:           true,
	twiliov1.ReasonAPIURLNotAllowed:   true,
}

// accountStalled reports whether an account needs a human (its Stalled
// condition, or a stalled Ready reason written before Stalled existed).
func accountStalled(acct *twiliov1.TwilioAccount) bool {
	if c := meta.FindStatusCondition(acct.Status.Conditions, twiliov1.ConditionStalled); c != nil {
		return c.Status == metav1.ConditionTrue
	}
	c := meta.FindStatusCondition(acct.Status.Conditions, twiliov1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionFalse && stalledAccountReasons[c.Reason]
}

// setKstatus derives Reconciling and Stalled from Ready and Synced. stalled
// reports a Ready=False reason that needs a human; waiting reports work still
// under way besides Ready and Synced (an account handing its numbers back).
func setKstatus(conds *[]metav1.Condition, gen int64, stalled func(ready *metav1.Condition) bool, waiting *metav1.Condition) {
	ready := meta.FindStatusCondition(*conds, twiliov1.ConditionReady)
	synced := meta.FindStatusCondition(*conds, twiliov1.ConditionSynced)
	var stall *metav1.Condition
	switch {
	case ready != nil && ready.Status == metav1.ConditionFalse && stalled(ready):
		stall = ready
	case synced != nil && synced.Status == metav1.ConditionFalse && synced.Reason == twiliov1.ReasonTwilioRejected:
		stall = synced
	}
	var busy *metav1.Condition
	switch {
	case stall != nil:
	case ready == nil && synced != nil && synced.Status == metav1.ConditionFalse:
		busy = synced // no verdict yet because Twilio keeps failing
	case ready == nil:
		busy = &metav1.Condition{Reason: twiliov1.ReasonProgressing, Message: "The operator has not reported yet"}
	case ready.Status != metav1.ConditionTrue:
		busy = ready
	case synced != nil && synced.Status == metav1.ConditionFalse:
		busy = synced
	case waiting != nil:
		busy = waiting
	}
	switch {
	case stall != nil:
		setCondition(conds, gen, twiliov1.ConditionStalled, metav1.ConditionTrue, stall.Reason, stall.Message)
		setCondition(conds, gen, twiliov1.ConditionReconciling, metav1.ConditionFalse, stall.Reason, "Stopped until something changes: see Stalled")
	case busy != nil:
		setCondition(conds, gen, twiliov1.ConditionStalled, metav1.ConditionFalse, busy.Reason, "Nothing needs a human")
		setCondition(conds, gen, twiliov1.ConditionReconciling, metav1.ConditionTrue, busy.Reason, busy.Message)
	default:
		setCondition(conds, gen, twiliov1.ConditionStalled, metav1.ConditionFalse, ready.Reason, "Nothing needs a human")
		setCondition(conds, gen, twiliov1.ConditionReconciling, metav1.ConditionFalse, ready.Reason, ready.Message)
	}
}
