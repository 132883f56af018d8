package webhookserver

import (
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/twilio/twilio-go/twiml"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twiliosig"
)

// Custom parameters passed on <Stream>; they arrive as start.customParameters.
const (
	paramFrom  = "from"
	paramTo    = "to"
	paramToken = "token"
)

// unavailableMessage is what a caller hears when the number is not routed
// here, and by default when a number's fallback is Say.
const unavailableMessage = "Sorry, this number cannot take your call right now. Goodbye."

// answer is what the voice webhook tells Twilio to do with a routed call.
type answer struct {
	record            bool
	recordingCallback string // absolute URL of /twilio/recording
	streamURL         string // wss://host/twilio/stream/{AccountSid} (ws:// for an http public URL)
	from, to, token   string
	// fallback are the verbs after </Connect> (fallbackVerbs), where Twilio
	// goes on once the stream ends without the call being hung up.
	fallback []twiml.Element
}

// answerTwiML renders the answer with twilio-go's twiml package (which
// XML-escapes attribute values and text): optionally <Start><Recording> of
// both tracks in two channels, then a bidirectional <Connect><Stream> with
// the routing parameters and the per-call token, then the fallback verbs.
// Attribute order varies between calls.
func answerTwiML(a answer) (string, error) {
	verbs := make([]twiml.Element, 0, 2+len(a.fallback))
	if a.record {
		verbs = append(verbs, twiml.VoiceStart{InnerElements: []twiml.Element{twiml.VoiceRecording{
			Channels:                      "dual",
			Track:                         "both",
			RecordingStatusCallback:       a.recordingCallback,
			RecordingStatusCallbackMethod: "POST",
			// absent too, so recordings that failed to produce audio are seen.
			RecordingStatusCallbackEvent: "completed absent",
		}}})
	}
	verbs = append(verbs, twiml.VoiceConnect{InnerElements: []twiml.Element{twiml.VoiceStream{
		Url: a.streamURL,
		InnerElements: []twiml.Element{
			twiml.VoiceParameter{Name: paramFrom, Value: a.from},
			twiml.VoiceParameter{Name: paramTo, Value: a.to},
			twiml.VoiceParameter{Name: paramToken, Value: a.token},
		},
	}}})
	verbs = append(verbs, a.fallback...)
	doc, err := twiml.Voice(verbs)
	if err != nil {
		return "", fmt.Errorf("render answer TwiML: %w", err)
	}
	return doc, nil
}

// fallbackVerbs are the verbs a number's spec.fallback puts after
// </Connect>, and the action they carry out: none without a fallback; Say
// (the default action) speaks spec.message (unavailableMessage when empty)
// and hangs up; Dial dials spec.number; Original redirects to the saved
// original Voice URL with its method (POST unless it was GET). Original
// without a saved Voice URL (an application, a trunk or nothing was there),
// and Dial without a number (the CRD requires one), are Say. saved is
// status.savedRouting: written only by the operator, so its URL is trusted
// as it is.
func fallbackVerbs(spec *twiliov1.FallbackSpec, saved *twiliov1.SavedRouting) (twiliov1.FallbackAction, []twiml.Element) {
	if spec == nil {
		return "", nil
	}
	switch spec.Action {
	case twiliov1.FallbackDial:
		if spec.Number != "" {
			return twiliov1.FallbackDial, []twiml.Element{twiml.VoiceDial{Number: spec.Number}}
		}
	case twiliov1.FallbackOriginal:
		if saved != nil && saved.VoiceURL != "" {
			method := http.MethodPost
			if strings.EqualFold(saved.VoiceMethod, http.MethodGet) {
				method = http.MethodGet
			}
			return twiliov1.FallbackOriginal, []twiml.Element{twiml.VoiceRedirect{Url: saved.VoiceURL, Method: method}}
		}
	}
	msg := spec.Message
	if msg == "" {
		msg = unavailableMessage
	}
	return twiliov1.FallbackSay, []twiml.Element{twiml.VoiceSay{Message: msg}, twiml.VoiceHangup{}}
}

// twimlHead is how twiml.Voice begins every document.
const twimlHead = `<?xml version="1.0" encoding="UTF-8"?><Response>`

// RenderFallback renders a number's fallback (spec.fallback and
// status.savedRouting, see Route.FallbackTwiML) as the TwiML fragment that
// follows </Connect> in its calls' answers: XML-escaped verbs, no
// <Response>; "" for no fallback. It also returns the action the fragment
// carries out (an Original without a saved Voice URL is Say). The routing
// table renders it once per route when it is rebuilt, never per call.
func RenderFallback(spec *twiliov1.FallbackSpec, saved *twiliov1.SavedRouting) (string, twiliov1.FallbackAction, error) {
	action, verbs := fallbackVerbs(spec, saved)
	if len(verbs) == 0 {
		return "", "", nil
	}
	doc, err := twiml.Voice(verbs)
	if err != nil {
		return "", "", fmt.Errorf("render fallback TwiML: %w", err)
	}
	if !strings.HasPrefix(doc, twimlHead) || !strings.HasSuffix(doc, "</Response>") {
		return "", "", fmt.Errorf("render fallback TwiML: unexpected document %q", doc)
	}
	return doc[len(twimlHead) : len(doc)-len("</Response>")], action, nil
}

// Placeholders stand for the per-call values in the pre-rendered answers;
// they are XML-safe, so twiml leaves them as they are. placeholderFallback
// is not rendered by twiml: it is put right after </Connect>, where the
// route's fallback fragment goes. placeholderCallbackTo is the called number
// in the recording status callback URL's query (recordingCallbackURL).
const (
	placeholderAccount    = "__tvo_param_account__"
	placeholderFrom       = "__tvo_param_from__"
	placeholderTo         = "__tvo_param_to__"
	placeholderToken      = "__tvo_param_token__" //nolint:gosec // a placeholder, not a credential
	placeholderFallback   = "__tvo_fallback__"
	placeholderCallbackTo = "__tvo_param_callback_to__"
)

// slot is a per-call value of an answer template.
type slot uint8

const (
	slotAccount slot = iota
	slotFrom
	slotTo
	slotToken
	slotFallback
	// slotCallbackTo is written query-escaped (writeQueryEscaped), which is
	// XML-safe too; every other slot's value is written as it is.
	slotCallbackTo
	numSlots
)

var placeholders = [numSlots]string{
	slotAccount:    placeholderAccount,
	slotFrom:       placeholderFrom,
	slotTo:         placeholderTo,
	slotToken:      placeholderToken,
	slotFallback:   placeholderFallback,
	slotCallbackTo: placeholderCallbackTo,
}

// ConnectionOverrides are the Twilio webhook connection overrides
// (twilio-facts.md §7) put, as a URL fragment, on the callback URLs whose
// events the server delivers to a sink: up to 3 retries (rc) when the server
// answers 5xx, or the connection or the read fails or times out (rp), all
// within Twilio's maximum total time of 15 s (tt). Twilio never sends the
// fragment; whether it signs it is unconfirmed, so signatures of those routes
// are accepted over the URL with and without it (signatureChecker). The
// recording status callback in the answer TwiML carries it; the operator
// should put the same fragment on the SmsUrl it points at EventsPath. The
// rp values 5xx, ct and rt are what Twilio's page and common use show; that
// Twilio waits between retries, and how long, is unconfirmed.
const ConnectionOverrides = twiliosig.ConnectionOverrides

// RecordingToParam is the query parameter of the recording status callback
// URL that names the called number: a recording callback carries the
// CallSid but not the number, which routes its event to the number's sink.
// Twilio signs the whole URL, query included.
const RecordingToParam = "to"

// recordingCallbackURL is the recording status callback URL of an answer
// template: RecordingPath at publicURL, the called number (a placeholder)
// in the query, and the connection overrides.
func recordingCallbackURL(publicURL string) string {
	return publicURL + RecordingPath + "?" + RecordingToParam + "=" + placeholderCallbackTo + ConnectionOverrides
}

// answerTemplate is one answer document cut at its placeholders: a call's
// answer is lits[0], the value of slots[0], lits[1], ... lits[len(slots)].
type answerTemplate struct {
	lits  []string
	slots []slot
	size  int // bytes of lits
}

// compileTemplate cuts doc at its placeholders; each must occur as often as
// want says (once or not at all).
func compileTemplate(doc string, want [numSlots]int) (answerTemplate, error) {
	var t answerTemplate
	var seen [numSlots]int
	rest := doc
	for {
		at, which := -1, slot(0)
		for i, p := range placeholders {
			if j := strings.Index(rest, p); j >= 0 && (at < 0 || j < at) {
				at, which = j, slot(i)
			}
		}
		if at < 0 {
			break
		}
		t.lits = append(t.lits, rest[:at])
		t.slots = append(t.slots, which)
		seen[which]++
		rest = rest[at+len(placeholders[which]):]
	}
	t.lits = append(t.lits, rest)
	for i, n := range seen {
		if n != want[i] {
			return t, fmt.Errorf("answer template: placeholder %s occurs %d times, want %d", placeholders[i], n, want[i])
		}
	}
	for _, l := range t.lits {
		t.size += len(l)
	}
	return t, nil
}

// fill writes the template with vals into one string (a single allocation).
func (t *answerTemplate) fill(vals *[numSlots]string) string {
	n := t.size
	for _, s := range t.slots {
		if s == slotCallbackTo {
			n += queryEscapedLen(vals[s])
		} else {
			n += len(vals[s])
		}
	}
	var b strings.Builder
	b.Grow(n)
	for i, s := range t.slots {
		b.WriteString(t.lits[i])
		if s == slotCallbackTo {
			writeQueryEscaped(&b, vals[s])
		} else {
			b.WriteString(vals[s])
		}
	}
	b.WriteString(t.lits[len(t.lits)-1])
	return b.String()
}

// queryUnreserved reports whether c stays as it is in a query value
// (RFC 3986 unreserved characters).
func queryUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// queryEscapedLen is the length of v as writeQueryEscaped writes it.
func queryEscapedLen(v string) int {
	n := len(v)
	for i := 0; i < len(v); i++ {
		if !queryUnreserved(v[i]) {
			n += 2
		}
	}
	return n
}

// writeQueryEscaped writes v percent-encoded as a query value (every byte
// but the unreserved ones as %XX; url.Values.Get decodes it), without
// allocating. The result is XML-safe.
func writeQueryEscaped(b *strings.Builder, v string) {
	const hex = "0123456789ABCDEF"
	done := 0 // v[:done] is written
	for i := 0; i < len(v); i++ {
		c := v[i]
		if queryUnreserved(c) {
			continue
		}
		b.WriteString(v[done:i])
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
		done = i + 1
	}
	b.WriteString(v[done:])
}

// answerTemplates are the two possible answers (with and without recording),
// rendered once by twilio-go's twiml package with placeholder values, plus
// the fallback placeholder after </Connect>, and cut at the placeholders.
// Rendering through twiml/etree was ~40% of the voice handler's CPU; a call
// now only joins the pieces with its account SID (in the stream URL's path),
// three XML-escaped values, the called number query-escaped (in the
// recording callback URL) and its route's pre-rendered fallback fragment.
type answerTemplates struct {
	withRecording, withoutRecording answerTemplate
}

// newAnswerTemplates renders the templates; the stream URL of an answer is
// streamURLPrefix (wss://host/twilio/stream/) followed by the call's account
// SID; recordingCallback (recordingCallbackURL) holds placeholderCallbackTo
// once, where the called number goes.
func newAnswerTemplates(recordingCallback, streamURLPrefix string) (answerTemplates, error) {
	if strings.Count(recordingCallback, placeholderCallbackTo) != 1 {
		return answerTemplates{}, errors.New("answer templates: the recording callback URL must hold the called number's placeholder once")
	}
	streamURL := streamURLPrefix + placeholderAccount
	var t answerTemplates
	for _, v := range []struct {
		record bool
		out    *answerTemplate
	}{{true, &t.withRecording}, {false, &t.withoutRecording}} {
		doc, err := answerTwiML(answer{record: v.record, recordingCallback: recordingCallback, streamURL: streamURL,
			from: placeholderFrom, to: placeholderTo, token: placeholderToken})
		if err != nil {
			return t, err
		}
		const end = "</Connect></Response>"
		if !strings.HasSuffix(doc, end) {
			return t, errors.New("render answer TwiML: the document does not end with </Connect></Response>")
		}
		doc = doc[:len(doc)-len("</Response>")] + placeholderFallback + "</Response>"
		want := [numSlots]int{slotAccount: 1, slotFrom: 1, slotTo: 1, slotToken: 1, slotFallback: 1}
		if v.record {
			want[slotCallbackTo] = 1
		}
		if *v.out, err = compileTemplate(doc, want); err != nil {
			return t, err
		}
	}
	return t, nil
}

// render is the answer for one call: values are XML-escaped as attribute
// values (to is also query-escaped into the recording callback URL);
// fallback is the route's pre-rendered fragment (RenderFallback), inserted
// after </Connect> as it is ("" for none). accountSID must satisfy
// validAccountSID: it becomes a path segment of the stream URL.
func (t *answerTemplates) render(record bool, fallback, accountSID, from, to, token string) string {
	tpl := &t.withoutRecording
	if record {
		tpl = &t.withRecording
	}
	vals := [numSlots]string{
		slotAccount:  xmlAttr(accountSID),
		slotFrom:     xmlAttr(from),
		slotTo:       xmlAttr(to),
		slotToken:    xmlAttr(token),
		slotFallback: fallback,
		// written query-escaped by fill, which is XML-safe
		slotCallbackTo: to,
	}
	return tpl.fill(&vals)
}

// validAccountSID reports whether sid can name an account in a stream URL:
// "AC" and up to 64 ASCII letters and digits (a Twilio account SID is AC and
// 32 hex digits, which the TwilioAccount CRD enforces), so it needs no
// escaping in a URL path or in XML.
func validAccountSID(sid string) bool {
	if len(sid) < 3 || len(sid) > 66 || !strings.HasPrefix(sid, "AC") {
		return false
	}
	for i := 2; i < len(sid); i++ {
		c := sid[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

// xmlAttr escapes v as xml.EscapeText does; printable ASCII without XML's
// special characters (the usual case: E.164 numbers, tokens) is returned as
// it is, without allocating.
func xmlAttr(v string) string {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c < 0x20 || c >= 0x80 || c == '"' || c == '\'' || c == '&' || c == '<' || c == '>' {
			var b strings.Builder
			_ = xml.EscapeText(&b, []byte(v)) // a strings.Builder never fails to write
			return b.String()
		}
	}
	return v
}

// hangupTwiML tells the caller the number is unavailable and hangs up.
func hangupTwiML() (string, error) {
	doc, err := twiml.Voice([]twiml.Element{
		twiml.VoiceSay{Message: unavailableMessage},
		twiml.VoiceHangup{},
	})
	if err != nil {
		return "", fmt.Errorf("render hang-up TwiML: %w", err)
	}
	return doc, nil
}

// emptyMessagingTwiML is <Response/>: accept an SMS without replying.
func emptyMessagingTwiML() (string, error) {
	doc, err := twiml.Messages(nil)
	if err != nil {
		return "", fmt.Errorf("render messaging TwiML: %w", err)
	}
	return doc, nil
}
