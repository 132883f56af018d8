package controllers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/preflight"
	"github.com/loquent/twilio-voice-operator/internal/twilio"
)

// Every write that points a number at the webhook server (a take-over, a
// re-point after a public URL change, a drift repair) passes three gates
// first, in this order:
//   - the number's live routing is not another install's (Contested);
//   - the account's preflight proved the public path end to end;
//   - the account's take-over pace allows one more.
// Hand-backs pass none of them: restoring is always allowed.

// takeoverGates holds the in-memory state of the gates. Losing it (a restart)
// only re-runs a preflight and refills the pace's burst.
type takeoverGates struct {
	mu     sync.Mutex
	pacers map[types.NamespacedName]*rate.Limiter
	// flips are the drifts seen per object: the foreign URL and when.
	flips map[types.UID][]flip
	// pendingSince is when a number's preflight first came back Pending
	// (the webhook server not caught up yet), to give up waiting.
	pendingSince map[types.UID]time.Time
}

type flip struct {
	url string
	at  time.Time
}

// Contested settings: this many drifts back to the same foreign URL within
// contestWindow poll intervals make the number Contested.
const (
	contestFlips  = 3
	contestWindow = 3
	// pendingGrace is how long a preflight may come back Pending (the webhook
	// server has not caught up with the published credentials or the route)
	// before the number reports WebhookUnreachable.
	pendingGrace = 30 * time.Second
)

// otherInstallURL reports whether a Voice URL was set by another install of
// this operator: it carries the install marker, points at /twilio/voice and is
// none of this operator's own URLs.
func otherInstallURL(raw, ours string, earlier []string) bool {
	if raw == "" || raw == ours {
		return false
	}
	for _, e := range earlier {
		if raw == e {
			return false
		}
	}
	u, err := url.Parse(raw)
	if err != nil {
		return false
	}
	return strings.HasSuffix(u.Path, VoicePath) && u.Query().Has(twiliov1.VoiceURLInstallParam)
}

// markContested stops re-applying: Ready=False Contested naming the URL.
func (r *TwilioPhoneNumberReconciler) markContested(s *numberScope, msg string) (ctrl.Result, error) {
	obj := s.obj
	if setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionFalse, twiliov1.ReasonContested, msg) {
		r.event(obj, corev1.EventTypeWarning, twiliov1.ReasonContested, "Reconcile", "%s", msg)
	}
	return r.twilioResult(obj, nil)
}

// contested decides whether a number whose live routing is not ours is
// contested: held at another install's URL, still Contested for this
// generation, or flipped back to the same foreign URL contestFlips times in
// contestWindow poll intervals. drift says the live routing changed away
// from ours since the last reconcile.
func (r *TwilioPhoneNumberReconciler) contested(s *numberScope, live twilio.Routing, earlier []string, drift bool) (string, bool) {
	obj := s.obj
	direct := live.TrunkSID == "" && live.VoiceApplicationSID == ""
	if direct && otherInstallURL(live.VoiceURL, r.VoiceURL, earlier) {
		return fmt.Sprintf("The number's routing (%s) was set by another install of twilio-voice-operator (another cluster or public URL) that routes it now; "+
			"this operator neither re-points it nor saves that URL as the original, and takes the number over once that install hands it back", describe(live)), true
	}
	// Contested stays while the live routing is the one it named, for this
	// generation: a spec change, or a change on the other side, tries again.
	if r.prevCurrent(s, twiliov1.ReasonContested) && strings.Contains(s.prevReady.Message, "("+describe(live)+")") {
		return s.prevReady.Message, true
	}
	if !drift {
		return "", false
	}
	g := r.gates
	now := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	window := time.Duration(contestWindow) * r.PollInterval
	kept := []flip{{url: describe(live), at: now}}
	for _, f := range g.flips[obj.UID] {
		if now.Sub(f.at) < window {
			kept = append(kept, f)
		}
	}
	g.flips[obj.UID] = kept
	same := 0
	for _, f := range kept {
		if f.url == kept[0].url {
			same++
		}
	}
	if same < contestFlips {
		return "", false
	}
	delete(g.flips, obj.UID)
	return fmt.Sprintf("Live routing went back to the same foreign routing (%s) %d times within %d poll intervals after this operator re-applied its URL: something else (another system or cluster) keeps setting it. "+
		"The operator stopped re-applying; it tries again when that routing changes or this object's spec does, so stop the other side first", describe(live), same, contestWindow), true
}

// forgetObject drops the gates' memory of a deleted object.
func (g *takeoverGates) forgetObject(uid types.UID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.flips, uid)
	delete(g.pendingSince, uid)
}

// preflightState is an account connection's latest preflight: a pass holds
// for one poll interval; a failure is retried with backoff (1 s doubling, at
// most one poll interval). It lives on the Connection, so new credentials or
// a changed account start afresh.
type preflightState struct {
	mu        sync.Mutex
	voiceURL  string
	passedAt  time.Time
	failure   string
	failures  int
	nextCheck time.Time
}

// preflightGate runs (or reuses) the account's preflight before a write that
// points the number at r.VoiceURL. ok is false when the write must wait; the
// condition and the result are then set.
func (r *TwilioPhoneNumberReconciler) preflightGate(ctx context.Context, s *numberScope) (ok bool, res ctrl.Result) {
	if !r.Preflight {
		return true, ctrl.Result{}
	}
	obj := s.obj
	if s.base.Status.PhoneNumberSID == "" {
		// The webhook server routes only numbers the operator recorded as
		// found in their account: record it first.
		r.waitForWebhook(s, "recording the number in status so that the webhook server routes it")
		return false, ctrl.Result{RequeueAfter: 200 * time.Millisecond}
	}
	st := &s.conn.preflight
	st.mu.Lock()
	defer st.mu.Unlock()
	now := time.Now()
	if st.voiceURL == r.VoiceURL && !st.passedAt.IsZero() && now.Sub(st.passedAt) < r.PollInterval {
		return true, ctrl.Result{}
	}
	if st.voiceURL == r.VoiceURL && st.failure != "" && now.Before(st.nextCheck) {
		return false, r.preflightFailed(s, st.failure, st.nextCheck.Sub(now))
	}
	err := preflight.Check(ctx, r.PreflightClient, preflight.Request{
		VoiceURL: r.VoiceURL, AccountSID: s.conn.AccountSID, AuthToken: s.conn.authToken,
		Number: obj.Spec.PhoneNumber, Object: obj.Namespace + "/" + obj.Name,
	})
	r.gates.mu.Lock()
	since, waited := r.gates.pendingSince[obj.UID]
	if f, isFailure := preflight.AsFailure(err); isFailure && f.Pending && (!waited || now.Sub(since) < pendingGrace) {
		if !waited {
			r.gates.pendingSince[obj.UID] = now
		}
		r.gates.mu.Unlock()
		// Expected right after the account or the number appeared: retried
		// soon, and not held against the account.
		r.waitForWebhook(s, "waiting for the webhook server to serve the number: "+f.Message)
		return false, ctrl.Result{RequeueAfter: time.Second + rand.N(time.Second)}
	}
	delete(r.gates.pendingSince, obj.UID)
	r.gates.mu.Unlock()
	st.voiceURL = r.VoiceURL
	if err == nil {
		if st.failure != "" || st.passedAt.IsZero() {
			r.event(obj, corev1.EventTypeNormal, "PreflightPassed", "Preflight",
				"A signed test request to %s came back streaming %s to this object's agent; numbers of account %s may be taken over", r.VoiceURL, obj.Spec.PhoneNumber, s.conn.AccountSID)
		}
		st.passedAt, st.failure, st.failures = now, "", 0
		return true, ctrl.Result{}
	}
	st.passedAt = time.Time{}
	st.failures++
	backoff := min(r.PollInterval, time.Second<<min(st.failures-1, 16))
	st.failure, st.nextCheck = err.Error(), now.Add(backoff)
	return false, r.preflightFailed(s, st.failure, backoff)
}

// waitForWebhook reports a take-over waiting for the webhook server.
func (r *TwilioPhoneNumberReconciler) waitForWebhook(s *numberScope, why string) {
	obj := s.obj
	setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionFalse, twiliov1.ReasonProgressing,
		"Not taken over yet: "+why)
}

func (r *TwilioPhoneNumberReconciler) preflightFailed(s *numberScope, failure string, retry time.Duration) ctrl.Result {
	obj := s.obj
	msg := fmt.Sprintf("The preflight of the public voice path failed, so no number of account %s is pointed at %s (numbers already routed are left as they are): %s. "+
		"Fix --public-url, the ingress or the webhook server; or run the manager with --preflight=false if its pods cannot reach their own ingress",
		s.conn.AccountSID, r.VoiceURL, failure)
	if setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionFalse, twiliov1.ReasonWebhookUnreachable, msg) {
		r.event(obj, corev1.EventTypeWarning, twiliov1.ReasonWebhookUnreachable, "Preflight", "%s", msg)
	}
	return ctrl.Result{RequeueAfter: retry + rand.N(retry/5+1)}
}

// paceGate takes one take-over from the account's pace (a token bucket:
// burst at once, then perMinute). ok is false when the number must wait.
func (r *TwilioPhoneNumberReconciler) paceGate(s *numberScope) (ok bool, res ctrl.Result) {
	burst, perMinute := r.TakeoverBurst, r.TakeoverPerMinute
	if p := s.acct.Spec.Takeover; p != nil {
		if p.Burst != nil {
			burst = int(*p.Burst)
		}
		if p.PerMinute != nil {
			perMinute = int(*p.PerMinute)
		}
	}
	if burst <= 0 || perMinute <= 0 {
		return true, ctrl.Result{}
	}
	key := client.ObjectKeyFromObject(s.acct)
	limit := rate.Limit(float64(perMinute) / 60)
	g := r.gates
	g.mu.Lock()
	lim := g.pacers[key]
	now := time.Now()
	switch {
	case lim == nil:
		lim = rate.NewLimiter(limit, burst)
		g.pacers[key] = lim
	case lim.Limit() != limit || lim.Burst() != burst:
		lim.SetLimitAt(now, limit)
		lim.SetBurstAt(now, burst)
	}
	g.mu.Unlock()
	if lim.AllowN(now, 1) {
		return true, ctrl.Result{}
	}
	rsv := lim.ReserveN(now, 1)
	wait := rsv.DelayFrom(now)
	rsv.CancelAt(now)
	obj := s.obj
	msg := fmt.Sprintf("Queued: TwilioAccount %q takes over %d numbers at once, then %d per minute (spec.takeover, or the manager's --takeover-burst and --takeover-per-minute); this number's turn comes shortly",
		s.acct.Name, burst, perMinute)
	if setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionReady, metav1.ConditionFalse, twiliov1.ReasonTakeoverPaced, msg) {
		r.event(obj, corev1.EventTypeNormal, twiliov1.ReasonTakeoverPaced, "Configure", "%s", msg)
	}
	return false, ctrl.Result{RequeueAfter: wait + rand.N(wait/5+time.Millisecond)}
}

// defaultPreflightClient follows no redirects: Twilio's voice requests do not
// either (twilio-facts.md §7).
func defaultPreflightClient() *http.Client {
	return &http.Client{
		Timeout:       preflight.DefaultTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// preflightFailure is the account's last preflight failure at this public
// URL, "" when it passed or has not run. A purchase (whose number the
// webhook server cannot route before it exists) waits on it.
func (r *TwilioPhoneNumberReconciler) preflightFailure(s *numberScope) string {
	if !r.Preflight {
		return ""
	}
	st := &s.conn.preflight
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.voiceURL == r.VoiceURL && st.failure != "" {
		return st.failure
	}
	return ""
}
