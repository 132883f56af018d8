package controllers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twilio"
)

// SMS routing (spec.messaging) follows the voice take-over and keeps its
// invariants: the number's SMS routing is saved in the same guarded record
// (SavedRouting.SMSSaved and the Sms* fields) before the first write that
// points it at the webhook server, is never saved when it is already ours,
// and is written back exactly on hand-back. Adding the SMS part to a record
// saved earlier uses the save order (annotation, status, then Twilio);
// dropping it when messaging is turned off uses the forget order (Twilio,
// status, then annotation), so every crash point leaves the annotation
// holding what Twilio had before.

// EventsPath is the webhook server's inbound SMS endpoint.
const EventsPath = "/twilio/events"

// smsPlan is what a reconcile decided about the number's SMS routing.
type smsPlan struct {
	// want: point the number's SMS at the webhook server.
	want bool
	// service is the Messaging Service whose sender pool holds the number.
	service *twilio.MessagingService
}

// eventsURL is the SmsUrl the operator sets: the events endpoint with
// Twilio's connection overrides, so a failed delivery is retried.
func (r *TwilioPhoneNumberReconciler) eventsURL() string {
	return r.callbackURL(EventsPath)
}

// smsRoutesHere reports whether Twilio sends the number's SMS to the
// operator's events URL: no SMS application (it takes precedence) and the
// URL called with POST.
func (r *TwilioPhoneNumberReconciler) smsRoutesHere(live twilio.Routing) bool {
	return live.SmsApplicationSID == "" && live.SmsURL == r.eventsURL() &&
		(live.SmsMethod == "" || strings.EqualFold(live.SmsMethod, "POST"))
}

// smsInPlace reports whether the live SMS routing is what the plan wants:
// routed here when wanted; otherwise no saved SMS routing left to hand back.
// A number that routes its calls here with no saved original
// (OriginalUnknown) has nothing to save its SMS routing in: its SMS are
// left as they are.
func (r *TwilioPhoneNumberReconciler) smsInPlace(plan smsPlan, live twilio.Routing, saved *twiliov1.SavedRouting) bool {
	if plan.want {
		return r.smsRoutesHere(live) || (saved == nil && routesTo(live, r.VoiceURL))
	}
	return saved == nil || !saved.SMSSaved
}

// captureSMS copies the live SMS routing into the record to save, unless it
// is already the operator's own (then nothing is saved as its SmsUrl).
func (r *TwilioPhoneNumberReconciler) captureSMS(rec *twiliov1.SavedRouting, live twilio.Routing, earlier []string) {
	rec.SMSSaved = true
	rec.SmsURL, rec.SmsMethod = live.SmsURL, live.SmsMethod
	rec.SmsFallbackURL, rec.SmsFallbackMethod = live.SmsFallbackURL, live.SmsFallbackMethod
	rec.SmsApplicationSID = live.SmsApplicationSID
	if r.ownCallbackURL(rec.SmsURL, EventsPath, earlier) {
		rec.SmsURL = ""
	}
}

// withoutSMS is rec with its SMS part dropped.
func withoutSMS(rec twiliov1.SavedRouting) twiliov1.SavedRouting {
	rec.SMSSaved = false
	rec.SmsURL, rec.SmsMethod, rec.SmsFallbackURL, rec.SmsFallbackMethod, rec.SmsApplicationSID = "", "", "", "", ""
	return rec
}

// smsUpdate adds the SMS writes to a take-over: point the SMS here when the
// plan wants it and their original is saved; put the saved SMS routing back
// when it does not any more and the live SmsUrl is still ours.
func (r *TwilioPhoneNumberReconciler) smsUpdate(plan smsPlan, live twilio.Routing, saved *twiliov1.SavedRouting, earlier []string, u *twilio.RoutingUpdate) {
	switch {
	case plan.want && saved != nil && saved.SMSSaved && !r.smsRoutesHere(live):
		events, post := r.eventsURL(), "POST"
		u.SmsURL, u.SmsMethod = &events, &post
		if live.SmsApplicationSID != "" {
			u.SmsApplicationSID = ptr("")
		}
	case !plan.want && saved != nil && saved.SMSSaved && live.SmsApplicationSID == "" && r.ownCallbackURL(live.SmsURL, EventsPath, earlier):
		restoreSMS(*saved, live, u)
	}
}

// restoreSMS adds the saved SMS routing to u, with restoreUpdate's rules:
// URLs always (empty ones clear), methods when saved, the SMS application
// SID only when one was saved or one must be cleared.
func restoreSMS(s twiliov1.SavedRouting, live twilio.Routing, u *twilio.RoutingUpdate) {
	u.SmsURL, u.SmsFallbackURL = ptr(s.SmsURL), ptr(s.SmsFallbackURL)
	if s.SmsMethod != "" {
		u.SmsMethod = ptr(s.SmsMethod)
	}
	if s.SmsFallbackMethod != "" {
		u.SmsFallbackMethod = ptr(s.SmsFallbackMethod)
	}
	switch {
	case s.SmsApplicationSID != "":
		u.SmsApplicationSID = ptr(s.SmsApplicationSID)
	case live.SmsApplicationSID != "":
		u.SmsApplicationSID = ptr("")
	}
}

// smsMatchesSaved reports whether the live SMS routing equals the saved one
// (true when no SMS routing was saved).
func smsMatchesSaved(r twilio.Routing, s twiliov1.SavedRouting) bool {
	if !s.SMSSaved {
		return true
	}
	return r.SmsURL == s.SmsURL && r.SmsFallbackURL == s.SmsFallbackURL && r.SmsApplicationSID == s.SmsApplicationSID &&
		eqMethod(r.SmsMethod, s.SmsMethod) && eqMethod(r.SmsFallbackMethod, s.SmsFallbackMethod)
}

// planSMS decides what the reconcile does with the number's SMS: nothing
// unless spec.messaging is Enabled; then route them here unless a Messaging
// Service holding the number overrides its SMS routing.
func (r *TwilioPhoneNumberReconciler) planSMS(ctx context.Context, s *numberScope) error {
	s.sms = smsPlan{}
	if !s.obj.MessagingEnabled() {
		return nil
	}
	services, err := s.conn.messagingServices(ctx, r.PollInterval)
	if err != nil {
		return err
	}
	for i := range services {
		if slices.Contains(services[i].PhoneNumbers, s.obj.Spec.PhoneNumber) {
			s.sms.service = &services[i]
			break
		}
	}
	s.sms.want = s.sms.service == nil || s.sms.service.UseInboundWebhookOnNumber
	return nil
}

// saveSMSPart adds the live SMS routing to an original saved without it,
// before the first write that points the SMS here (save order).
func (r *TwilioPhoneNumberReconciler) saveSMSPart(ctx context.Context, s *numberScope, saved twiliov1.SavedRouting, live twilio.Routing, earlier []string) (*twiliov1.SavedRouting, error) {
	r.captureSMS(&saved, live, earlier)
	if err := r.saveOriginal(ctx, s, saved); err != nil {
		return nil, fmt.Errorf("save the original SMS routing: %w", err)
	}
	r.event(s.obj, corev1.EventTypeNormal, "SMSSaved", "Configure", "Original SMS routing saved (%s)", describeSMS(saved))
	return &saved, nil
}

// dropSMSPart forgets the saved SMS routing once Twilio has it back (forget
// order: status, then annotation).
func (r *TwilioPhoneNumberReconciler) dropSMSPart(ctx context.Context, s *numberScope, saved twiliov1.SavedRouting) error {
	rest := withoutSMS(saved)
	if err := r.patchSavedStatus(ctx, s, &rest); err != nil {
		return fmt.Errorf("drop the saved SMS routing from status: %w", err)
	}
	if err := r.patchGuard(ctx, s, &rest); err != nil {
		return fmt.Errorf("drop the saved SMS routing from the annotation: %w", err)
	}
	r.event(s.obj, corev1.EventTypeNormal, "SMSRestored", "Restore", "Original SMS routing restored (%s)", describeSMS(saved))
	return nil
}

// describeSMS is a short human form of a saved SMS routing.
func describeSMS(s twiliov1.SavedRouting) string {
	switch {
	case s.SmsApplicationSID != "":
		return "SMS application " + s.SmsApplicationSID
	case s.SmsURL != "":
		return "SmsUrl " + s.SmsURL
	}
	return "no SmsUrl"
}

// markMessaging sets the Messaging condition of a number that routes here.
func (r *TwilioPhoneNumberReconciler) markMessaging(s *numberScope) {
	obj := s.obj
	s.messagingMarked = true
	svc := s.sms.service
	obj.Status.MessagingServiceSID = ""
	if svc != nil {
		obj.Status.MessagingServiceSID = svc.SID
	}
	switch {
	case !obj.MessagingEnabled():
		return
	case obj.Status.SavedRouting == nil:
		setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionMessaging, metav1.ConditionFalse, twiliov1.ReasonOriginalUnknown,
			"No original routing of this number is saved (it already routed to this operator), so its SMS are not taken over: they could not be handed back")
	case svc != nil && !svc.UseInboundWebhookOnNumber:
		msg := fmt.Sprintf("The number is in Messaging Service %s (%s), whose inbound settings override the number's SMS routing; the operator leaves it as it is. "+
			"To receive its SMS here, turn on the service's \"use inbound webhook on number\" setting, or remove the number from the service", svc.SID, svc.FriendlyName)
		if setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionMessaging, metav1.ConditionFalse, twiliov1.ReasonInMessagingService, msg) {
			r.event(obj, corev1.EventTypeWarning, twiliov1.ReasonInMessagingService, "Configure", "%s", msg)
		}
	default:
		msg := "Inbound SMS route to " + r.eventsURL()
		if svc != nil {
			msg += fmt.Sprintf(" (the number is in Messaging Service %s, which defers to the number's SMS routing)", svc.SID)
		}
		setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionMessaging, metav1.ConditionTrue, twiliov1.ReasonSMSRouted, msg)
	}
}

// settleMessaging runs before status is written: without spec.messaging the
// Messaging condition goes; with it, a reconcile that leaves the number not
// routed here says that SMS are not routed either.
func (r *TwilioPhoneNumberReconciler) settleMessaging(s *numberScope) {
	obj := s.obj
	if !obj.MessagingEnabled() {
		meta.RemoveStatusCondition(&obj.Status.Conditions, twiliov1.ConditionMessaging)
		obj.Status.MessagingServiceSID = ""
		return
	}
	if s.messagingMarked {
		return
	}
	if ready := meta.FindStatusCondition(obj.Status.Conditions, twiliov1.ConditionReady); ready != nil &&
		(ready.Reason == twiliov1.ReasonConfigured || ready.Reason == twiliov1.ReasonOriginalUnknown) &&
		meta.FindStatusCondition(obj.Status.Conditions, twiliov1.ConditionMessaging) != nil {
		return // still routed (a Twilio error in between, say): what the last routed reconcile said stands
	}
	setCondition(&obj.Status.Conditions, obj.Generation, twiliov1.ConditionMessaging, metav1.ConditionFalse, twiliov1.ReasonVoiceNotRouted,
		"SMS are routed together with the voice routing, which is not in place (see the Ready condition)")
}

// servicesCache is one account's Messaging Services as of the last list.
type servicesCache struct {
	mu       sync.Mutex
	listedAt time.Time
	services []twilio.MessagingService
}

// messagingServices returns the account's Messaging Services from a list no
// older than maxAge: numbers with spec.messaging share one list per poll.
func (c *Connection) messagingServices(ctx context.Context, maxAge time.Duration) ([]twilio.MessagingService, error) {
	c.services.mu.Lock()
	defer c.services.mu.Unlock()
	if !c.services.listedAt.IsZero() && time.Since(c.services.listedAt) < maxAge {
		return c.services.services, nil
	}
	list, err := c.Client.MessagingServices(ctx)
	if err != nil {
		return nil, err
	}
	c.services.services, c.services.listedAt = list, time.Now()
	return list, nil
}
