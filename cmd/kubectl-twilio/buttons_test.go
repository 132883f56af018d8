package main

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
)

func getNumber(g Gomega, key client.ObjectKey) *twiliov1.TwilioPhoneNumber {
	var obj twiliov1.TwilioPhoneNumber
	g.Expect(k8s.Get(context.Background(), key, &obj)).To(Succeed())
	return &obj
}

// configure and restore are the seed's buttons: they flip spec.voiceRouting
// of the object found by name or by number and say what comes next.
func TestConfigureAndRestoreSetVoiceRouting(t *testing.T) {
	g := NewWithT(t)
	ns := namespace(t)
	original := "https://old.example.com/support"
	number(t, ns, "support", "+14155550400", nil, func(s *twiliov1.TwilioPhoneNumberStatus) {
		s.PreviousVoiceURL = &original
		s.SavedRouting = &twiliov1.SavedRouting{VoiceURL: original}
	})
	number(t, ns, "sales", "+14155550401", func(s *twiliov1.TwilioPhoneNumberSpec) { noAgent(s); disabled(s) }, nil)
	key := client.ObjectKey{Namespace: ns, Name: "support"}

	out, stderr, code := kubectlTwilio("restore", "+14155550400", "-n", ns)
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(out).To(Equal("TwilioPhoneNumber " + ns + "/support (+14155550400): voiceRouting set to Disabled; the operator will put the saved original routing back in Twilio (https://old.example.com/support) and then forget it\n"))
	obj := getNumber(g, key)
	g.Expect(obj.Spec.VoiceRouting).To(Equal(twiliov1.VoiceRoutingDisabled))
	g.Expect(obj.Generation).To(Equal(int64(2)))

	out, stderr, code = kubectlTwilio("configure", "support", "-n", ns)
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(out).To(ContainSubstring("voiceRouting set to Enabled; the operator keeps the number's Voice URL at the webhook server"))
	obj = getNumber(g, key)
	g.Expect(obj.Spec.VoiceRouting).To(Equal(twiliov1.VoiceRoutingEnabled))
	g.Expect(obj.Generation).To(Equal(int64(3)))

	out, stderr, code = kubectlTwilio("configure", "-n", ns, "+14155550400")
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(out).To(ContainSubstring("voiceRouting is already Enabled"))
	g.Expect(getNumber(g, key).Generation).To(Equal(int64(3)), "nothing to change, nothing written")

	out, stderr, code = kubectlTwilio("configure", "sales", "-n", ns)
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(out).To(ContainSubstring("voiceRouting set to Enabled; but spec.agent is not set, so the operator will not take the number over (NoAgent)"))
	g.Expect(getNumber(g, client.ObjectKey{Namespace: ns, Name: "sales"}).Spec.VoiceRouting).To(Equal(twiliov1.VoiceRoutingEnabled))

	out, stderr, code = kubectlTwilio("restore", "sales", "-n", ns)
	g.Expect(code).To(Equal(0), stderr)
	g.Expect(out).To(ContainSubstring("the operator holds no saved routing for this number, so it leaves the number as it is"))
}

func TestButtonErrors(t *testing.T) {
	ns := namespace(t)
	number(t, ns, "first", "+14155550402", nil, nil)
	number(t, ns, "second", "+14155550402", nil, nil)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no argument", []string{"configure", "-n", ns}, 2, "Usage:"},
		{"flag of another subcommand", []string{"restore", "first", "-n", ns, "-f", "x.yaml"}, 2, "-f does not apply to restore"},
		{"unknown name", []string{"configure", "nope", "-n", ns}, 1, "get TwilioPhoneNumber " + ns + "/nope"},
		{"unknown number", []string{"restore", "+14155550499", "-n", ns}, 1, "no TwilioPhoneNumber in namespace " + ns + " has spec.phoneNumber +14155550499"},
		{"ambiguous number", []string{"restore", "+14155550402", "-n", ns}, 1, "2 TwilioPhoneNumbers in namespace " + ns + " have spec.phoneNumber +14155550402 (first, second); name the one you mean"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, stderr, code := kubectlTwilio(tc.args...)
			g.Expect(code).To(Equal(tc.code), stderr)
			g.Expect(stderr).To(ContainSubstring(tc.want))
		})
	}
	g := NewWithT(t)
	for _, name := range []string{"first", "second"} {
		g.Expect(getNumber(g, client.ObjectKey{Namespace: ns, Name: name}).Generation).To(Equal(int64(1)), "nothing was patched")
	}
}

// pressAndWait runs the button with --wait in the background and returns
// its outcome on a channel.
type outcome struct {
	stdout, stderr string
	code           int
	took           time.Duration
}

func pressAndWait(args ...string) <-chan outcome {
	done := make(chan outcome, 1)
	go func() {
		start := time.Now()
		out, errOut, code := kubectlTwilio(args...)
		done <- outcome{out, errOut, code, time.Since(start)}
	}()
	return done
}

// --wait fails as soon as the operator settles the new generation on a
// Ready=False reason, with that reason and message; it waits through
// Progressing and through a stale verdict on the old generation.
func TestConfigureWaitFailsFastWithReason(t *testing.T) {
	g := NewWithT(t)
	ns := namespace(t)
	number(t, ns, "line", "+14155550403", func(s *twiliov1.TwilioPhoneNumberSpec) { noAgent(s); disabled(s) }, nil)
	key := client.ObjectKey{Namespace: ns, Name: "line"}
	setReady(t, key, 1, metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled, "Voice routing is Disabled")

	done := pressAndWait("configure", "line", "-n", ns, "--wait", "--timeout", "30s")
	g.Eventually(func(g Gomega) { g.Expect(getNumber(g, key).Generation).To(Equal(int64(2))) }).Should(Succeed())
	setReady(t, key, 2, metav1.ConditionFalse, twiliov1.ReasonProgressing, "Reading the number from Twilio")
	g.Consistently(done, 3*waitPoll).ShouldNot(Receive(), "still Progressing")
	setReady(t, key, 2, metav1.ConditionFalse, twiliov1.ReasonNoAgent, "spec.agent is not set, so the number is not taken over")

	var res outcome
	g.Eventually(done).WithTimeout(10 * time.Second).Should(Receive(&res))
	g.Expect(res.code).To(Equal(1))
	g.Expect(res.stdout).To(ContainSubstring("voiceRouting set to Enabled"))
	g.Expect(res.stderr).To(ContainSubstring("TwilioPhoneNumber " + ns + "/line: not Ready, NoAgent: spec.agent is not set, so the number is not taken over"))
	g.Expect(res.took).To(BeNumerically("<", 15*time.Second), "failed fast, well before --timeout")
}

func TestRestoreWaitReportsTheOutcome(t *testing.T) {
	g := NewWithT(t)
	ns := namespace(t)
	number(t, ns, "line", "+14155550404", nil, nil)
	key := client.ObjectKey{Namespace: ns, Name: "line"}
	setReady(t, key, 1, metav1.ConditionTrue, twiliov1.ReasonConfigured, "Inbound calls route to "+ourVoiceURL)

	done := pressAndWait("restore", "+14155550404", "-n", ns, "--wait")
	g.Eventually(func(g Gomega) { g.Expect(getNumber(g, key).Generation).To(Equal(int64(2))) }).Should(Succeed())
	g.Consistently(done, 3*waitPoll).ShouldNot(Receive(), "the operator has not observed generation 2 yet")
	setReady(t, key, 2, metav1.ConditionTrue, twiliov1.ReasonRoutingDisabled, "Voice routing is Disabled; the original routing is back in place (VoiceUrl https://old.example.com/x)")

	var res outcome
	g.Eventually(done).WithTimeout(10 * time.Second).Should(Receive(&res))
	g.Expect(res.code).To(Equal(0), res.stderr)
	g.Expect(res.stdout).To(HaveSuffix("TwilioPhoneNumber " + ns + "/line (+14155550404): Ready, RoutingDisabled: Voice routing is Disabled; the original routing is back in place (VoiceUrl https://old.example.com/x)\n"))

	// A webhook that cannot be reached is reported as such.
	done = pressAndWait("configure", "line", "-n", ns, "--wait")
	g.Eventually(func(g Gomega) { g.Expect(getNumber(g, key).Generation).To(Equal(int64(3))) }).Should(Succeed())
	setReady(t, key, 3, metav1.ConditionFalse, twiliov1.ReasonWebhookUnreachable, "POST "+ourVoiceURL+" answered 502 Bad Gateway")
	g.Eventually(done).WithTimeout(10 * time.Second).Should(Receive(&res))
	g.Expect(res.code).To(Equal(1))
	g.Expect(res.stderr).To(ContainSubstring("not Ready, WebhookUnreachable: POST " + ourVoiceURL + " answered 502 Bad Gateway"))
}

func TestWaitTimesOutWithoutAnOperator(t *testing.T) {
	g := NewWithT(t)
	ns := namespace(t)
	number(t, ns, "line", "+14155550405", nil, nil)
	_, stderr, code := kubectlTwilio("restore", "line", "-n", ns, "--wait", "--timeout", "1s")
	g.Expect(code).To(Equal(1))
	g.Expect(stderr).To(ContainSubstring("timed out after 1s waiting for the operator to report generation 2 of TwilioPhoneNumber " + ns + "/line: it has observed generation 0 so far (is the operator running?)"))
}
