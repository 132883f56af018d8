package controllers

import (
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twilio"
)

// setCondition sets one condition for generation gen; it reports whether the
// condition's status or reason changed (the moments worth an event).
func setCondition(conds *[]metav1.Condition, gen int64, typ string, status metav1.ConditionStatus, reason, msg string) bool {
	old := meta.FindStatusCondition(*conds, typ)
	changed := old == nil || old.Status != status || old.Reason != reason
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: gen,
	})
	return changed
}

// syncedCondition computes the Synced condition from the outcome of the last
// Twilio exchange.
func syncedCondition(err error) (metav1.ConditionStatus, string, string) {
	if err == nil {
		return metav1.ConditionTrue, twiliov1.ReasonSynced, "The last Twilio API call succeeded"
	}
	switch twilio.ClassOf(err) {
	case twilio.ClassWait:
		return metav1.ConditionFalse, twiliov1.ReasonRateLimited,
			fmt.Sprintf("Twilio answered 429 (too many concurrent requests); retrying with backoff: %v", err)
	case twilio.ClassTerminal:
		return metav1.ConditionFalse, twiliov1.ReasonTwilioRejected,
			fmt.Sprintf("Twilio refused the request; it is not sent again until the object, its account or Secret, or the number in Twilio changes: %v", err)
	default:
		return metav1.ConditionFalse, twiliov1.ReasonTwilioAPIError,
			fmt.Sprintf("Twilio API call failed; retrying with backoff: %v", err)
	}
}

// isConditionReason reports whether condition typ currently has this status and reason.
func isConditionReason(conds []metav1.Condition, typ string, status metav1.ConditionStatus, reason string) bool {
	c := meta.FindStatusCondition(conds, typ)
	return c != nil && c.Status == status && c.Reason == reason
}
