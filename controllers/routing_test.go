package controllers

import (
	"errors"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twilio"
)

const ours = "https://voice.example.com/twilio/voice"

func TestRoutesTo(t *testing.T) {
	tests := []struct {
		name string
		r    twilio.Routing
		want bool
	}{
		{"ours", twilio.Routing{VoiceURL: ours, VoiceMethod: "POST"}, true},
		{"ours, method unset", twilio.Routing{VoiceURL: ours}, true},
		{"ours by GET", twilio.Routing{VoiceURL: ours, VoiceMethod: "GET"}, false},
		{"other URL", twilio.Routing{VoiceURL: "https://x/voice"}, false},
		{"application wins over our URL", twilio.Routing{VoiceURL: ours, VoiceApplicationSID: "AP1"}, false},
		{"trunk wins over our URL", twilio.Routing{VoiceURL: ours, TrunkSID: "TK1"}, false},
	}
	for _, tt := range tests {
		if got := routesTo(tt.r, ours); got != tt.want {
			t.Errorf("%s: routesTo = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestOriginalNeverHoldsOurURL(t *testing.T) {
	s := originalFrom(twilio.Routing{VoiceURL: ours, VoiceApplicationSID: "AP1"}, ours)
	if s.VoiceURL != "" || s.VoiceApplicationSID != "AP1" {
		t.Errorf("saved %+v", s)
	}
	s = originalFrom(twilio.Routing{VoiceURL: "https://old", VoiceMethod: "GET", TrunkSID: "TK1"}, ours)
	if s.VoiceURL != "https://old" || s.VoiceMethod != "GET" || s.TrunkSID != "TK1" {
		t.Errorf("saved %+v", s)
	}
}

func TestEarlierOwnURLNeverSavedAsOriginal(t *testing.T) {
	const earlier = "https://old-public.example.com/twilio/voice"
	if s := originalFrom(twilio.Routing{VoiceURL: earlier}, ours, earlier); s.VoiceURL != "" {
		t.Errorf("an earlier URL of this operator was saved as the original: %+v", s)
	}
	if s := originalFrom(twilio.Routing{VoiceURL: "https://customer.example.com"}, ours, earlier); s.VoiceURL != "https://customer.example.com" {
		t.Errorf("a customer's URL was dropped: %+v", s)
	}
	if s := originalFrom(twilio.Routing{VoiceURL: "https://customer.example.com"}, ours, ""); s.VoiceURL != "https://customer.example.com" {
		t.Errorf("no earlier URL known: %+v", s)
	}
}

func TestTakeoverClearsOnlyWhatTakesPrecedence(t *testing.T) {
	u := takeoverUpdate(twilio.Routing{VoiceURL: "https://old"}, ours, "", "")
	if *u.VoiceURL != ours || *u.VoiceMethod != "POST" || u.VoiceApplicationSID != nil || u.TrunkSID != nil || u.VoiceFallbackURL != nil {
		t.Errorf("plain takeover %+v", u)
	}
	u = takeoverUpdate(twilio.Routing{VoiceApplicationSID: "AP1", TrunkSID: "TK1"}, ours, "", "")
	if u.VoiceApplicationSID == nil || *u.VoiceApplicationSID != "" || u.TrunkSID == nil || *u.TrunkSID != "" {
		t.Errorf("takeover over app+trunk must clear both: %+v", u)
	}
}

func TestRestoreSendsExplicitEmpties(t *testing.T) {
	u := restoreUpdate(twiliov1.SavedRouting{VoiceApplicationSID: "AP1", VoiceMethod: "POST"}, twilio.Routing{VoiceURL: ours})
	for name, f := range map[string]*string{"VoiceURL": u.VoiceURL, "VoiceFallbackURL": u.VoiceFallbackURL, "StatusCallback": u.StatusCallback} {
		if f == nil || *f != "" {
			t.Errorf("%s must be sent as an explicit empty value, got %v", name, f)
		}
	}
	if u.VoiceApplicationSID == nil || *u.VoiceApplicationSID != "AP1" || *u.VoiceMethod != "POST" {
		t.Errorf("restore %+v", u)
	}
	if u.VoiceFallbackMethod != nil || u.StatusCallbackMethod != nil {
		t.Error("an empty method must not be sent (Twilio rejects it)")
	}
	if !matchesSaved(twilio.Routing{VoiceApplicationSID: "AP1", VoiceMethod: "post"}, twiliov1.SavedRouting{VoiceApplicationSID: "AP1", VoiceMethod: "POST"}) {
		t.Error("matchesSaved should ignore method case")
	}
	if matchesSaved(twilio.Routing{VoiceURL: ours}, twiliov1.SavedRouting{}) {
		t.Error("our URL does not match an empty saved routing")
	}
}

// Twilio's API description forbids empty SIDs except to clear one the number
// holds, and setting one of application and trunk clears the other.
func TestRestoreSendsSIDsOnlyWhereTheyMatter(t *testing.T) {
	for _, tc := range []struct {
		name       string
		saved      twiliov1.SavedRouting
		live       twilio.Routing
		app, trunk *string // nil: the field is not sent
	}{
		{"URL only", twiliov1.SavedRouting{VoiceURL: "https://old"}, twilio.Routing{VoiceURL: ours}, nil, nil},
		{"no URL", twiliov1.SavedRouting{}, twilio.Routing{VoiceURL: ours}, nil, nil},
		{"saved application", twiliov1.SavedRouting{VoiceApplicationSID: "AP1"}, twilio.Routing{VoiceURL: ours}, ptr("AP1"), nil},
		{"saved trunk", twiliov1.SavedRouting{TrunkSID: "TK1"}, twilio.Routing{VoiceURL: ours}, nil, ptr("TK1")},
		{"saved application over a live trunk", twiliov1.SavedRouting{VoiceApplicationSID: "AP1"}, twilio.Routing{TrunkSID: "TK9"}, ptr("AP1"), nil},
		{"URL only, live application", twiliov1.SavedRouting{VoiceURL: "https://old"}, twilio.Routing{VoiceApplicationSID: "AP9"}, ptr(""), nil},
		{"URL only, live trunk", twiliov1.SavedRouting{VoiceURL: "https://old"}, twilio.Routing{TrunkSID: "TK9"}, nil, ptr("")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := restoreUpdate(tc.saved, tc.live)
			if !equalPtr(u.VoiceApplicationSID, tc.app) || !equalPtr(u.TrunkSID, tc.trunk) {
				t.Errorf("VoiceApplicationSid %v, TrunkSid %v; want %v, %v", show(u.VoiceApplicationSID), show(u.TrunkSID), show(tc.app), show(tc.trunk))
			}
			if u.VoiceURL == nil || *u.VoiceURL != tc.saved.VoiceURL {
				t.Errorf("VoiceUrl %v, want %q", show(u.VoiceURL), tc.saved.VoiceURL)
			}
		})
	}
}

func equalPtr(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func show(p *string) string {
	if p == nil {
		return "(not sent)"
	}
	return fmt.Sprintf("%q", *p)
}

func TestSavedAnnotationRoundTrip(t *testing.T) {
	in := twiliov1.SavedRouting{VoiceURL: "", VoiceApplicationSID: "AP1", StatusCallback: "https://s"}
	obj := newGuarded()
	obj.Annotations[twiliov1.AnnotationSavedRouting] = savedAnnotation(testKey, obj, in)
	out, err := savedFromAnnotation(testKey, obj)
	if err != nil || out == nil || *out != in {
		t.Fatalf("round trip %+v %v", out, err)
	}
	if out, err := savedFromAnnotation(testKey, newGuarded()); out != nil || err != nil {
		t.Errorf("absent annotation: %v %v", out, err)
	}
	obj.Annotations[twiliov1.AnnotationSavedRouting] = "{"
	if _, err := savedFromAnnotation(testKey, obj); err == nil {
		t.Error("garbage annotation decoded")
	}
}

func TestSyncedCondition(t *testing.T) {
	tests := []struct {
		err    error
		status metav1.ConditionStatus
		reason string
	}{
		{nil, metav1.ConditionTrue, twiliov1.ReasonSynced},
		{&twilio.Error{Op: "x", Class: twilio.ClassWait, Status: 429, Code: 20429, Err: errors.New("busy")}, metav1.ConditionFalse, twiliov1.ReasonRateLimited},
		{&twilio.Error{Op: "x", Class: twilio.ClassTerminal, Status: 400, Code: 21502, Err: errors.New("bad")}, metav1.ConditionFalse, twiliov1.ReasonTwilioRejected},
		{errors.New("connection reset"), metav1.ConditionFalse, twiliov1.ReasonTwilioAPIError},
	}
	for _, tt := range tests {
		s, r, msg := syncedCondition(tt.err)
		if s != tt.status || r != tt.reason || msg == "" || msg[0] < 'A' || msg[0] > 'Z' {
			t.Errorf("syncedCondition(%v) = %s %s %q", tt.err, s, r, msg)
		}
	}
}

func TestSetConditionReportsChanges(t *testing.T) {
	var conds []metav1.Condition
	if !setCondition(&conds, 1, "Ready", metav1.ConditionFalse, "Progressing", "a") {
		t.Error("first set is a change")
	}
	if setCondition(&conds, 2, "Ready", metav1.ConditionFalse, "Progressing", "b") {
		t.Error("same status and reason is not a change")
	}
	if conds[0].ObservedGeneration != 2 || conds[0].Message != "b" {
		t.Errorf("condition not updated: %+v", conds[0])
	}
	if !setCondition(&conds, 2, "Ready", metav1.ConditionTrue, "Configured", "c") {
		t.Error("status change not reported")
	}
}

func TestOriginalSummaryTellsTheStatesApart(t *testing.T) {
	for _, tt := range []struct {
		saved *twiliov1.SavedRouting
		want  string
	}{
		{nil, ""},
		{&twiliov1.SavedRouting{}, "(none)"},
		{&twiliov1.SavedRouting{VoiceURL: "https://old/voice"}, "https://old/voice"},
		{&twiliov1.SavedRouting{VoiceApplicationSID: "AP1", VoiceURL: "https://ignored"}, "(application AP1)"},
		{&twiliov1.SavedRouting{TrunkSID: "TK1"}, "(trunk TK1)"},
	} {
		if got := originalSummary(tt.saved); got != tt.want {
			t.Errorf("originalSummary(%+v) = %q, want %q", tt.saved, got, tt.want)
		}
	}
}
