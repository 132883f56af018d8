package main

import (
	"fmt"
	"net/url"
	"strings"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/controllers"
	"github.com/loquent/twilio-voice-operator/internal/publicurl"
	"github.com/loquent/twilio-voice-operator/internal/twilio"
)

// voiceTarget is what the plan knows of the voice URL the operator points
// numbers at: {public URL}/twilio/voice?tvo-install={install ID}.
type voiceTarget struct {
	// url is the operator's voice URL, "" when unknown.
	url string
	// installID is the operator's install ID, "" when unknown.
	installID string
	// source says where url came from.
	source string
	// configured holds every status.configuredVoiceURL seen; when url is
	// unknown, a number routes to the operator only at one of them.
	configured map[string]bool
}

// resolveVoiceTarget builds the voice URL from the flags and fills what they
// leave out from the status.configuredVoiceURL that most objects of the
// namespaces carry. all are the cluster's objects, for the unknown case.
func resolveVoiceTarget(publicURL, installID string, namespaced, all []*twiliov1.TwilioPhoneNumber) (voiceTarget, error) {
	v := voiceTarget{installID: installID, configured: map[string]bool{}}
	for _, o := range all {
		if u := o.Status.ConfiguredVoiceURL; u != "" {
			v.configured[u] = true
		}
	}
	base := ""
	if publicURL != "" {
		p, err := publicurl.Parse(publicURL, true)
		if err != nil {
			return v, fmt.Errorf("--public-url: %w", err)
		}
		base = p
	}
	seenURL, seenFrom := commonConfiguredURL(namespaced)
	seenBase, seenID := splitVoiceURL(seenURL)
	var flags, seen []string
	if base != "" {
		flags = append(flags, "--public-url")
	} else if seenBase != "" {
		base = seenBase
		seen = append(seen, "public URL")
	}
	if v.installID != "" {
		flags = append(flags, "--install-id")
	} else if seenID != "" {
		v.installID = seenID
		seen = append(seen, "install ID")
	}
	if base == "" {
		v.source = "unknown: pass --public-url and --install-id (or set $KUBECTL_TWILIO_PUBLIC_URL and $KUBECTL_TWILIO_INSTALL_ID); a number counts as routed to the operator only at an object's status.configuredVoiceURL"
		return v, nil
	}
	v.url = base + controllers.VoicePath
	if v.installID != "" {
		v.url += "?" + twiliov1.VoiceURLInstallParam + "=" + url.QueryEscape(v.installID)
	}
	var from []string
	if len(flags) > 0 {
		from = append(from, strings.Join(flags, " and "))
	}
	if len(seen) > 0 {
		from = append(from, "the "+strings.Join(seen, " and ")+" in status.configuredVoiceURL of "+seenFrom)
	}
	v.source = "from " + strings.Join(from, " and ")
	if v.installID == "" {
		v.source += "; no install ID is known, so it carries no " + twiliov1.VoiceURLInstallParam + " marker"
	}
	return v, nil
}

// commonConfiguredURL is the status.configuredVoiceURL most of objs carry
// (ties: the smallest), and the first object carrying it.
func commonConfiguredURL(objs []*twiliov1.TwilioPhoneNumber) (voiceURL, object string) {
	count := map[string]int{}
	first := map[string]string{}
	for _, o := range objs {
		u := o.Status.ConfiguredVoiceURL
		if u == "" {
			continue
		}
		count[u]++
		if name := o.Namespace + "/" + o.Name; first[u] == "" || name < first[u] {
			first[u] = name
		}
	}
	for u, c := range count {
		if voiceURL == "" || c > count[voiceURL] || (c == count[voiceURL] && u < voiceURL) {
			voiceURL = u
		}
	}
	return voiceURL, first[voiceURL]
}

// splitVoiceURL splits a voice URL the operator set into its public URL and
// install ID; both are "" when it is not one.
func splitVoiceURL(raw string) (base, installID string) {
	u, err := url.Parse(raw)
	if raw == "" || err != nil || u.Host == "" || !strings.HasSuffix(u.Path, controllers.VoicePath) {
		return "", ""
	}
	return u.Scheme + "://" + u.Host + strings.TrimSuffix(u.Path, controllers.VoicePath), u.Query().Get(twiliov1.VoiceURLInstallParam)
}

// target names the voice URL for people.
func (v voiceTarget) target() string {
	if v.url == "" {
		return "the operator's voice URL"
	}
	return v.url
}

// ours reports whether u is the operator's voice URL.
func (v voiceTarget) ours(u string) bool {
	if v.url == "" {
		return u != "" && v.configured[u]
	}
	return u == v.url
}

// routesToUs reports whether Twilio sends the number's calls to the
// operator's voice URL: no trunk and no TwiML application (both take
// precedence over VoiceUrl), and the URL called with POST.
func (v voiceTarget) routesToUs(r twilio.Routing) bool {
	return r.TrunkSID == "" && r.VoiceApplicationSID == "" && v.ours(r.VoiceURL) &&
		(r.VoiceMethod == "" || strings.EqualFold(r.VoiceMethod, "POST"))
}

// ownEarlier reports whether u is a voice URL this install set before: the
// object's status.configuredVoiceURL, or a URL marked with this install's ID.
func (v voiceTarget) ownEarlier(obj *twiliov1.TwilioPhoneNumber, u string) bool {
	if u == "" || v.ours(u) {
		return false
	}
	id, marked := installMarker(u)
	return u == obj.Status.ConfiguredVoiceURL || (marked && v.installID != "" && id == v.installID)
}

// contested reports whether u is another install's voice URL: marked with
// twiliov1.VoiceURLInstallParam, at /twilio/voice, and not this install's.
func (v voiceTarget) contested(obj *twiliov1.TwilioPhoneNumber, u string) bool {
	_, marked := installMarker(u)
	return marked && !v.ours(u) && !v.ownEarlier(obj, u)
}

// installMarker returns the install ID a voice URL is marked with.
func installMarker(raw string) (installID string, marked bool) {
	u, err := url.Parse(raw)
	if raw == "" || err != nil || !strings.HasSuffix(u.Path, controllers.VoicePath) {
		return "", false
	}
	q := u.Query()
	if _, ok := q[twiliov1.VoiceURLInstallParam]; !ok {
		return "", false
	}
	return q.Get(twiliov1.VoiceURLInstallParam), true
}
