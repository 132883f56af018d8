package controllers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twilio"
	"github.com/loquent/twilio-voice-operator/internal/twiliosig"
)

// VoicePath is the webhook server's inbound-call endpoint under the public URL.
const VoicePath = "/twilio/voice"

// InstallVoiceURL is the Voice URL an install points numbers at:
// {public URL}/twilio/voice?tvo-install={install ID}. The marker lets other
// installs recognise it (see otherInstallURL); Twilio signs the whole URL, and
// the webhook server checks it as requested.
func InstallVoiceURL(publicURL, installID string) string {
	return publicURL + VoicePath + "?" + url.Values{twiliov1.VoiceURLInstallParam: {installID}}.Encode()
}

// DefaultInstallID names an install after its public URL (12 hex digits of
// its SHA-256): stable across restarts, and different for two installs
// unless they share a public URL (and so a webhook server).
func DefaultInstallID(publicURL string) string {
	sum := sha256.Sum256([]byte(publicURL))
	return hex.EncodeToString(sum[:6])
}

// routesTo reports whether Twilio sends the number's calls to voiceURL: no
// trunk and no TwiML application (both take precedence over VoiceUrl) and
// the URL called with POST.
func routesTo(r twilio.Routing, voiceURL string) bool {
	return r.TrunkSID == "" && r.VoiceApplicationSID == "" && r.VoiceURL == voiceURL &&
		(r.VoiceMethod == "" || strings.EqualFold(r.VoiceMethod, "POST"))
}

// desiredFallback is the VoiceFallbackUrl (and method) spec.fallback asks for
// while the number routes here: its voiceFallbackURL, or the saved original
// Voice URL with originalAsVoiceFallback. set is false when the spec asks for
// none (the number's own fallback is left as it is).
func desiredFallback(obj *twiliov1.TwilioPhoneNumber, saved *twiliov1.SavedRouting) (url, method string, set bool) {
	f := obj.Spec.Fallback
	switch {
	case f == nil:
		return "", "", false
	case f.VoiceFallbackURL != "":
		return f.VoiceFallbackURL, "POST", true
	case f.OriginalAsVoiceFallback && saved != nil && saved.VoiceURL != "":
		method = saved.VoiceMethod
		if method == "" {
			method = "POST"
		}
		return saved.VoiceURL, strings.ToUpper(method), true
	}
	return "", "", false
}

// isRouted reports whether the live routing is what the operator wants while
// the number is Enabled: calls go to its voice URL; its SMS as the SMS plan
// says (see smsInPlace); when spec.fallback asks for one, Twilio's fallback
// is that URL; and the status callback is the webhook server's exactly when
// spec.events.callStatus asks for it.
func (r *TwilioPhoneNumberReconciler) isRouted(s *numberScope, live twilio.Routing, saved *twiliov1.SavedRouting) bool {
	obj := s.obj
	if !routesTo(live, r.VoiceURL) || !r.smsInPlace(s.sms, live, saved) {
		return false
	}
	if want, _, set := desiredFallback(obj, saved); set && live.VoiceFallbackURL != want {
		return false
	}
	if wantsCallStatus(obj) {
		return live.StatusCallback == r.statusURL()
	}
	return !r.ownCallbackURL(live.StatusCallback, StatusPath, r.earlierVoiceURLs(obj))
}

// earlierVoiceURLs are the voice URLs this operator set before on obj's
// number or at an earlier public URL: its own, never an original.
func (r *TwilioPhoneNumberReconciler) earlierVoiceURLs(obj *twiliov1.TwilioPhoneNumber) []string {
	return append([]string{obj.Status.ConfiguredVoiceURL}, r.EarlierVoiceURLs...)
}

// ownCallbackURL reports whether u is the webhook server's endpoint path of
// this install, at its public URL or an earlier one (fragment and query
// ignored): such a URL is never saved as an original, and is what a
// hand-back of that callback replaces.
func (r *TwilioPhoneNumberReconciler) ownCallbackURL(u, path string, earlier []string) bool {
	if u == "" {
		return false
	}
	base, _, _ := strings.Cut(u, "#")
	base, _, _ = strings.Cut(base, "?")
	for _, v := range append([]string{r.VoiceURL}, earlier...) {
		if v != "" && base == siblingURL(v, path) {
			return true
		}
	}
	return false
}

// wantsCallStatus reports whether the number asks for call status events.
func wantsCallStatus(obj *twiliov1.TwilioPhoneNumber) bool {
	return obj.Spec.Events != nil && obj.Spec.Events.CallStatus
}

// StatusPath is the webhook server's call status callback endpoint.
const StatusPath = "/twilio/status"

// statusURL is the webhook server's call status URL: the voice URL's origin
// and StatusPath.
func (r *TwilioPhoneNumberReconciler) statusURL() string {
	return r.callbackURL(StatusPath)
}

// callbackURL is a callback endpoint of the webhook server the operator
// sets on numbers: path next to the voice URL (siblingURL), with Twilio's
// connection overrides so that a failed delivery is retried.
func (r *TwilioPhoneNumberReconciler) callbackURL(path string) string {
	if u := siblingURL(r.VoiceURL, path); u != "" {
		return u + twiliosig.ConnectionOverrides
	}
	return ""
}

// siblingURL is the webhook server's endpoint path next to voiceURL: the
// same origin and path prefix, without the voice URL's query.
func siblingURL(voiceURL, path string) string {
	u, err := url.Parse(voiceURL)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, VoicePath) + path
}

// statusCallbackUpdate sets the status callback a take-over writes: the
// webhook server's when the number asks for call status events; the saved
// original when it no longer does but the live one is still ours (at this
// public URL or an earlier one).
func (r *TwilioPhoneNumberReconciler) statusCallbackUpdate(obj *twiliov1.TwilioPhoneNumber, live twilio.Routing, saved *twiliov1.SavedRouting, earlier []string, u *twilio.RoutingUpdate) {
	switch ours := r.statusURL(); {
	case wantsCallStatus(obj) && live.StatusCallback != ours:
		post := "POST"
		u.StatusCallback, u.StatusCallbackMethod = &ours, &post
	case !wantsCallStatus(obj) && r.ownCallbackURL(live.StatusCallback, StatusPath, earlier):
		orig, method := "", ""
		if saved != nil {
			orig, method = saved.StatusCallback, saved.StatusCallbackMethod
		}
		u.StatusCallback = &orig
		if method != "" {
			u.StatusCallbackMethod = &method
		}
	}
}

// originalFrom is the routing to save before taking a number over. Our own
// URLs (the current one and any this operator set before) are never saved
// as the original: restoring one would hand back nothing.
func originalFrom(r twilio.Routing, voiceURL string, earlier ...string) twiliov1.SavedRouting {
	s := twiliov1.SavedRouting{
		VoiceURL:             r.VoiceURL,
		VoiceMethod:          r.VoiceMethod,
		VoiceFallbackURL:     r.VoiceFallbackURL,
		VoiceFallbackMethod:  r.VoiceFallbackMethod,
		StatusCallback:       r.StatusCallback,
		StatusCallbackMethod: r.StatusCallbackMethod,
		VoiceApplicationSID:  r.VoiceApplicationSID,
		TrunkSID:             r.TrunkSID,
	}
	if s.VoiceURL == voiceURL || (s.VoiceURL != "" && slices.Contains(earlier, s.VoiceURL)) {
		s.VoiceURL = ""
	}
	return s
}

// takeoverUpdate points the number at voiceURL, clearing the TwiML
// application and trunk that would otherwise take precedence.
// A non-empty fallbackURL also becomes the number's VoiceFallbackUrl.
func takeoverUpdate(live twilio.Routing, voiceURL, fallbackURL, fallbackMethod string) twilio.RoutingUpdate {
	post, empty := "POST", ""
	u := twilio.RoutingUpdate{VoiceURL: &voiceURL, VoiceMethod: &post}
	if fallbackURL != "" {
		u.VoiceFallbackURL, u.VoiceFallbackMethod = &fallbackURL, &fallbackMethod
	}
	if live.VoiceApplicationSID != "" {
		u.VoiceApplicationSID = &empty
	}
	if live.TrunkSID != "" {
		u.TrunkSID = &empty
	}
	return u
}

// restoreUpdate writes every saved URL and method back, empty URLs as
// explicit empty values so they are cleared. Methods are sent only when one
// was saved (Twilio rejects an empty method). SIDs are sent only where they
// matter: the saved application or trunk (setting one clears the other in
// Twilio), or else an explicit empty value for one the live number holds.
// Twilio's API description forbids empty SIDs otherwise, so a restore of a
// URL-only number sends no SID field at all.
func restoreUpdate(s twiliov1.SavedRouting, live twilio.Routing) twilio.RoutingUpdate {
	u := twilio.RoutingUpdate{
		VoiceURL:         ptr(s.VoiceURL),
		VoiceFallbackURL: ptr(s.VoiceFallbackURL),
		StatusCallback:   ptr(s.StatusCallback),
	}
	switch {
	case s.VoiceApplicationSID != "":
		u.VoiceApplicationSID = ptr(s.VoiceApplicationSID)
	case s.TrunkSID != "":
		u.TrunkSID = ptr(s.TrunkSID)
	default:
		if live.VoiceApplicationSID != "" {
			u.VoiceApplicationSID = ptr("")
		}
		if live.TrunkSID != "" {
			u.TrunkSID = ptr("")
		}
	}
	if s.VoiceMethod != "" {
		u.VoiceMethod = ptr(s.VoiceMethod)
	}
	if s.VoiceFallbackMethod != "" {
		u.VoiceFallbackMethod = ptr(s.VoiceFallbackMethod)
	}
	if s.StatusCallbackMethod != "" {
		u.StatusCallbackMethod = ptr(s.StatusCallbackMethod)
	}
	if s.SMSSaved {
		restoreSMS(s, live, &u)
	}
	return u
}

// matchesSaved reports whether the live routing already equals the saved one.
func matchesSaved(r twilio.Routing, s twiliov1.SavedRouting) bool {
	return r.VoiceURL == s.VoiceURL && r.VoiceFallbackURL == s.VoiceFallbackURL &&
		r.StatusCallback == s.StatusCallback && r.VoiceApplicationSID == s.VoiceApplicationSID &&
		r.TrunkSID == s.TrunkSID && eqMethod(r.VoiceMethod, s.VoiceMethod) &&
		eqMethod(r.VoiceFallbackMethod, s.VoiceFallbackMethod) && eqMethod(r.StatusCallbackMethod, s.StatusCallbackMethod) &&
		smsMatchesSaved(r, s)
}

// eqMethod reports whether a live HTTP method matches a saved one (any,
// when none was saved).
func eqMethod(live, saved string) bool { return saved == "" || strings.EqualFold(live, saved) }

func ptr(s string) *string { return &s }

// describe is a short human form of a routing for events and messages.
func describe(r twilio.Routing) string {
	switch {
	case r.TrunkSID != "":
		return "SIP trunk " + r.TrunkSID
	case r.VoiceApplicationSID != "":
		return "TwiML application " + r.VoiceApplicationSID
	case r.VoiceURL != "":
		return "VoiceUrl " + r.VoiceURL
	default:
		return "no VoiceUrl"
	}
}

// originalSummary is status.original: the saved original as kubectl get
// shows it, "" when nothing is saved (not configured).
func originalSummary(s *twiliov1.SavedRouting) string {
	switch {
	case s == nil:
		return ""
	case s.VoiceApplicationSID != "":
		return "(application " + s.VoiceApplicationSID + ")"
	case s.TrunkSID != "":
		return "(trunk " + s.TrunkSID + ")"
	case s.VoiceURL == "":
		return "(none)"
	}
	return s.VoiceURL
}

func describeSaved(s twiliov1.SavedRouting) string {
	return describe(twilio.Routing{VoiceURL: s.VoiceURL, VoiceApplicationSID: s.VoiceApplicationSID, TrunkSID: s.TrunkSID})
}

// signedRouting is the saved-routing annotation: the routing and an HMAC
// that binds it to its object (namespace, name, phone number) under the
// operator's guard key. Anyone may write annotations; only one carrying a
// valid MAC is the operator's own.
type signedRouting struct {
	Routing json.RawMessage `json:"routing"`
	MAC     string          `json:"mac"`
}

// errUntrusted says an annotation was not written by this operator (or was
// written under another guard key).
var errUntrusted = errors.New("not written by this operator: its signature does not verify")

// savedFromAnnotation decodes and verifies the annotation copy of the saved
// routing. It returns nil, nil when there is none, and an error when it is
// unreadable or its MAC does not verify.
func savedFromAnnotation(key []byte, obj *twiliov1.TwilioPhoneNumber) (*twiliov1.SavedRouting, error) {
	raw, ok := obj.Annotations[twiliov1.AnnotationSavedRouting]
	if !ok {
		return nil, nil
	}
	var sr signedRouting
	if err := json.Unmarshal([]byte(raw), &sr); err != nil || len(sr.Routing) == 0 {
		return nil, fmt.Errorf("annotation %s: %w", twiliov1.AnnotationSavedRouting, errUntrusted)
	}
	got, err := base64.StdEncoding.DecodeString(sr.MAC)
	if err != nil || !hmac.Equal(got, guardMAC(key, obj, sr.Routing)) {
		return nil, fmt.Errorf("annotation %s: %w", twiliov1.AnnotationSavedRouting, errUntrusted)
	}
	var s twiliov1.SavedRouting
	if err := json.Unmarshal(sr.Routing, &s); err != nil {
		return nil, fmt.Errorf("decode annotation %s: %w", twiliov1.AnnotationSavedRouting, err)
	}
	return &s, nil
}

// savedJSON is the routing as JSON (what earlier versions stored unsigned).
func savedJSON(s twiliov1.SavedRouting) string {
	b, _ := json.Marshal(s) // a struct of strings always marshals
	return string(b)
}

// savedAnnotation is the signed annotation value for obj's saved routing.
func savedAnnotation(key []byte, obj *twiliov1.TwilioPhoneNumber, s twiliov1.SavedRouting) string {
	routing := []byte(savedJSON(s))
	b, _ := json.Marshal(signedRouting{Routing: routing, MAC: base64.StdEncoding.EncodeToString(guardMAC(key, obj, routing))})
	return string(b)
}

func guardMAC(key []byte, obj *twiliov1.TwilioPhoneNumber, routing []byte) []byte {
	return objectMAC(key, "twilio.loquent.io/saved-routing/v1", obj, routing)
}

// objectMAC binds data of the given kind (domain) to obj's namespace, name
// and number under the operator's guard key.
func objectMAC(key []byte, domain string, obj *twiliov1.TwilioPhoneNumber, data []byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, part := range []string{domain, obj.Namespace, obj.Name, obj.Spec.PhoneNumber} {
		m.Write([]byte(part))
		m.Write([]byte{0})
	}
	m.Write(data)
	return m.Sum(nil)
}
