package controllers

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

// Each partial guard, as a crash or a wipe can leave it, is repaired from
// whichever copy still holds the original; a whole guard or none needs
// nothing.
func TestPlanGuardRepairsEveryPartialState(t *testing.T) {
	orig := twiliov1.SavedRouting{VoiceURL: "https://old.example.com/voice", VoiceMethod: "GET"}
	other := twiliov1.SavedRouting{VoiceApplicationSID: "AP1"}
	type state struct {
		annotation *twiliov1.SavedRouting
		raw        string // an annotation value that is not JSON
		status     *twiliov1.SavedRouting
		finalizer  bool
	}
	for _, tc := range []struct {
		name       string
		in         state
		annotate   *twiliov1.SavedRouting
		finalizer  bool
		status     *twiliov1.SavedRouting
		unreadable bool
	}{
		{name: "nothing saved", in: state{}},
		{name: "nothing saved, finalizer left", in: state{finalizer: true}},
		{name: "whole guard", in: state{annotation: &orig, status: &orig, finalizer: true}},
		{name: "status wiped", in: state{annotation: &orig, finalizer: true}, status: &orig},
		{name: "annotation and finalizer lost (crash of an older version, backup)", in: state{status: &orig}, annotate: &orig},
		{name: "annotation lost, finalizer kept", in: state{status: &orig, finalizer: true}, annotate: &orig},
		{name: "finalizer lost", in: state{annotation: &orig, status: &orig}, finalizer: true},
		{name: "only the annotation", in: state{annotation: &orig}, finalizer: true, status: &orig},
		{name: "copies differ: the annotation counts", in: state{annotation: &orig, status: &other, finalizer: true}, status: &orig},
		{name: "unreadable annotation, status holds it", in: state{raw: "{not json", status: &orig, finalizer: true}, annotate: &orig},
		{name: "unreadable annotation, nothing else", in: state{raw: "{not json", finalizer: true}, unreadable: true},
		{name: "forged annotation (unsigned), nothing else", in: state{raw: `{"voiceUrl":"https://attacker.example.com"}`}, unreadable: true},
		{name: "forged annotation, status holds the original", in: state{raw: `{"routing":{"voiceUrl":"https://attacker.example.com"},"mac":"AAAA"}`, status: &orig, finalizer: true}, annotate: &orig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := newGuarded()
			switch {
			case tc.in.annotation != nil:
				obj.Annotations[twiliov1.AnnotationSavedRouting] = savedAnnotation(testKey, obj, *tc.in.annotation)
			case tc.in.raw != "":
				obj.Annotations[twiliov1.AnnotationSavedRouting] = tc.in.raw
			}
			if tc.in.status != nil {
				obj.Status.SavedRouting = tc.in.status
				obj.Status.PreviousVoiceURL = ptr(tc.in.status.VoiceURL)
			}
			if tc.in.finalizer {
				obj.Finalizers = []string{Finalizer}
			}
			p := planGuard(testKey, obj)
			if !equalSaved(p.annotate, tc.annotate) {
				t.Errorf("annotate = %+v, want %+v", p.annotate, tc.annotate)
			}
			if p.addFinalizer != tc.finalizer {
				t.Errorf("addFinalizer = %v, want %v", p.addFinalizer, tc.finalizer)
			}
			if !equalSaved(p.status, tc.status) {
				t.Errorf("status = %+v, want %+v", p.status, tc.status)
			}
			if (p.unreadable != nil) != tc.unreadable {
				t.Errorf("unreadable = %v, want %v", p.unreadable, tc.unreadable)
			}
			// Applying the plan leaves a whole guard that needs nothing more.
			if p.unreadable == nil {
				if p.annotate != nil {
					obj.Annotations[twiliov1.AnnotationSavedRouting] = savedAnnotation(testKey, obj, *p.annotate)
					obj.Finalizers = []string{Finalizer}
				}
				if p.addFinalizer {
					obj.Finalizers = []string{Finalizer}
				}
				if p.status != nil {
					obj.Status.SavedRouting, obj.Status.PreviousVoiceURL = p.status, ptr(p.status.VoiceURL)
				}
				if again := planGuard(testKey, obj); !again.empty() {
					t.Errorf("after repair the plan is still %+v", again)
				}
			}
		})
	}
}

// previousVoiceURL out of step with savedRouting is rewritten too.
func TestPlanGuardFixesPreviousVoiceURL(t *testing.T) {
	orig := twiliov1.SavedRouting{VoiceURL: "https://old.example.com/voice"}
	obj := newGuarded()
	obj.Annotations[twiliov1.AnnotationSavedRouting] = savedAnnotation(testKey, obj, orig)
	obj.Finalizers = []string{Finalizer}
	obj.Status.SavedRouting = &orig
	if p := planGuard(testKey, obj); p.status == nil {
		t.Error("previousVoiceURL absent while savedRouting is set: status must be rewritten")
	}
}

func TestGuardOfNeedsASignedAnnotationAndFinalizer(t *testing.T) {
	orig := twiliov1.SavedRouting{VoiceURL: "https://old.example.com/voice"}
	signed := savedAnnotation(testKey, newGuarded(), orig)
	otherObject := newGuarded()
	otherObject.Name = "someone-else"
	for _, tc := range []struct {
		name       string
		annotation string
		finalizers []string
		want       bool
	}{
		{"whole", signed, []string{Finalizer}, true},
		{"no finalizer", signed, nil, false},
		{"no annotation", "", []string{Finalizer}, false},
		{"unreadable", "x", []string{Finalizer}, false},
		{"signed under another key", savedAnnotation([]byte("another-key-another-key-another-k"), newGuarded(), orig), []string{Finalizer}, false},
		{"copied from another object", savedAnnotation(testKey, otherObject, orig), []string{Finalizer}, false},
		{"routing edited after signing", strings.Replace(signed, "old.example.com", "attacker.example.com", 1), []string{Finalizer}, false},
	} {
		obj := newGuarded()
		if tc.annotation != "" {
			obj.Annotations[twiliov1.AnnotationSavedRouting] = tc.annotation
		}
		obj.Finalizers = tc.finalizers
		if got := guardOf(testKey, obj) != nil; got != tc.want {
			t.Errorf("%s: guard = %v, want %v", tc.name, got, tc.want)
		}
	}
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

func newGuarded() *twiliov1.TwilioPhoneNumber {
	return &twiliov1.TwilioPhoneNumber{
		ObjectMeta: metav1.ObjectMeta{Namespace: "tenant-b", Name: "support", Annotations: map[string]string{}},
		Spec:       twiliov1.TwilioPhoneNumberSpec{PhoneNumber: "+14155550100"},
	}
}

func equalSaved(a, b *twiliov1.SavedRouting) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// An annotation an earlier (unsigning) version wrote, matching status, is an
// upgrade: it is re-signed without a GuardRestored warning. A forged one is not.
func TestLegacyAnnotationIsAnUpgrade(t *testing.T) {
	orig := twiliov1.SavedRouting{VoiceURL: "https://old.example.com/voice", VoiceMethod: "GET"}
	obj := newGuarded()
	obj.Finalizers = []string{Finalizer}
	obj.Annotations[twiliov1.AnnotationSavedRouting] = savedJSON(orig)
	obj.Status.SavedRouting, obj.Status.PreviousVoiceURL = &orig, ptr(orig.VoiceURL)
	if p := planGuard(testKey, obj); !equalSaved(p.annotate, &orig) {
		t.Fatalf("an unsigned annotation must be rewritten signed, plan %+v", p)
	}
	if !legacyAnnotation(obj, orig) {
		t.Error("the earlier version's own annotation is an upgrade")
	}
	other := twiliov1.SavedRouting{VoiceURL: "https://attacker.example.com"}
	obj.Annotations[twiliov1.AnnotationSavedRouting] = savedJSON(other)
	if legacyAnnotation(obj, orig) {
		t.Error("an annotation that differs from status is not an upgrade")
	}
}
