package v1alpha1

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestOwnsBefore(t *testing.T) {
	t0 := metav1.NewTime(time.Unix(1000, 0))
	t1 := metav1.NewTime(time.Unix(1001, 0))
	obj := func(ns, name string, created metav1.Time, holds bool) *TwilioPhoneNumber {
		n := &TwilioPhoneNumber{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: created}}
		if holds {
			n.Status.SavedRouting = &SavedRouting{VoiceURL: "https://old"}
		}
		return n
	}
	annotated := obj("b", "z", t1, false)
	annotated.Annotations = map[string]string{AnnotationSavedRouting: "{}"}
	tests := []struct {
		name string
		a, b *TwilioPhoneNumber
		want bool
	}{
		{"older wins", obj("b", "x", t0, false), obj("a", "x", t1, false), true},
		{"newer loses", obj("a", "x", t1, false), obj("b", "x", t0, false), false},
		{"holder of the original wins over an older object", obj("z", "z", t1, true), obj("a", "a", t0, false), true},
		// Anyone who may edit the object can write annotations: they prove nothing.
		{"an annotation does not count as holding it", annotated, obj("a", "a", t0, false), false},
		{"same second: namespace first", obj("a", "z", t0, false), obj("b", "a", t0, false), true},
		{"same second and namespace: name", obj("a", "b", t0, false), obj("a", "a", t0, false), false},
	}
	for _, tt := range tests {
		if got := OwnsBefore(tt.a, tt.b); got != tt.want {
			t.Errorf("%s: OwnsBefore = %v, want %v", tt.name, got, tt.want)
		}
		if tt.want && OwnsBefore(tt.b, tt.a) {
			t.Errorf("%s: order is not antisymmetric", tt.name)
		}
	}
}
