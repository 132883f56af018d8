package controllers

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

// The operator's own status patches must not cost a reconcile each, but every
// change a reconcile has to act on must still get one.
func TestNotStatusOnlyPassesWhatNeedsAReconcile(t *testing.T) {
	saved := &twiliov1.SavedRouting{VoiceURL: originalURL}
	held := func() *twiliov1.TwilioPhoneNumber {
		return &twiliov1.TwilioPhoneNumber{
			ObjectMeta: metav1.ObjectMeta{
				Name: "n", Generation: 1, ResourceVersion: "1",
				Annotations: map[string]string{twiliov1.AnnotationSavedRouting: "x"},
				Finalizers:  []string{Finalizer},
			},
			Status: twiliov1.TwilioPhoneNumberStatus{SavedRouting: saved, PreviousVoiceURL: ptrTo(originalURL)},
		}
	}
	now := metav1.Now()
	cases := []struct {
		name   string
		change func(*twiliov1.TwilioPhoneNumber)
		want   bool
	}{
		{"status only (our own patch)", func(n *twiliov1.TwilioPhoneNumber) {
			n.Status.VoiceURL = testVoiceURL
			n.Status.Conditions = []metav1.Condition{{Type: twiliov1.ConditionReady, Status: metav1.ConditionTrue}}
		}, false},
		{"spec (generation)", func(n *twiliov1.TwilioPhoneNumber) { n.Generation++ }, true},
		{"annotation", func(n *twiliov1.TwilioPhoneNumber) { n.Annotations["example.com/note"] = "y" }, true},
		{"finalizer removed by hand", func(n *twiliov1.TwilioPhoneNumber) { n.Finalizers = nil }, true},
		{"deletion", func(n *twiliov1.TwilioPhoneNumber) { n.DeletionTimestamp = &now }, true},
		{"status lost the saved routing", func(n *twiliov1.TwilioPhoneNumber) {
			n.Status = twiliov1.TwilioPhoneNumberStatus{}
		}, true},
	}
	p := notStatusOnly()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			oldObj, newObj := held(), held()
			newObj.ResourceVersion = "2"
			c.change(newObj)
			if got := p.Update(event.UpdateEvent{ObjectOld: oldObj, ObjectNew: newObj}); got != c.want {
				t.Errorf("passes = %v, want %v", got, c.want)
			}
		})
	}
}
