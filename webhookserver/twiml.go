package webhookserver

import (
	"encoding/xml"
	"fmt"
	"strings"

	"github.com/twilio/twilio-go/twiml"
)

// Custom parameters passed on <Stream>; they arrive as start.customParameters.
const (
	paramFrom  = "from"
	paramTo    = "to"
	paramToken = "token"
)

// unavailableMessage is what a caller hears when the number is not routed here.
const unavailableMessage = "Sorry, this number cannot take your call right now. Goodbye."

// answer is what the voice webhook tells Twilio to do with a routed call.
type answer struct {
	record            bool
	recordingCallback string // absolute URL of /twilio/recording
	streamURL         string // wss://host/twilio/stream/{AccountSid} (ws:// for an http public URL)
	from, to, token   string
}

// answerTwiML renders the answer with twilio-go's twiml package (which
// XML-escapes attribute values): optionally <Start><Recording> of both tracks
// in two channels, then a bidirectional <Connect><Stream> with the routing
// parameters and the per-call token. Attribute order varies between calls.
func answerTwiML(a answer) (string, error) {
	verbs := make([]twiml.Element, 0, 2)
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
	doc, err := twiml.Voice(verbs)
	if err != nil {
		return "", fmt.Errorf("render answer TwiML: %w", err)
	}
	return doc, nil
}

// Placeholders stand for the per-call parameter values in the pre-rendered
// answers; they are XML-safe, so twiml leaves them as they are.
const (
	placeholderAccount = "__tvo_param_account__"
	placeholderFrom    = "__tvo_param_from__"
	placeholderTo      = "__tvo_param_to__"
	placeholderToken   = "__tvo_param_token__" //nolint:gosec // a placeholder, not a credential
)

// answerTemplates are the two possible answers (with and without recording),
// rendered once by twilio-go's twiml package with placeholder parameter
// values. Rendering through twiml/etree was ~40% of the voice handler's CPU;
// a call now only substitutes its account SID (in the stream URL's path) and
// three XML-escaped values.
type answerTemplates struct {
	withRecording, withoutRecording string
}

// newAnswerTemplates renders the templates; the stream URL of an answer is
// streamURLPrefix (wss://host/twilio/stream/) followed by the call's account SID.
func newAnswerTemplates(recordingCallback, streamURLPrefix string) (answerTemplates, error) {
	streamURL := streamURLPrefix + placeholderAccount
	var t answerTemplates
	var err error
	for _, v := range []struct {
		record bool
		out    *string
	}{{true, &t.withRecording}, {false, &t.withoutRecording}} {
		*v.out, err = answerTwiML(answer{record: v.record, recordingCallback: recordingCallback, streamURL: streamURL,
			from: placeholderFrom, to: placeholderTo, token: placeholderToken})
		if err != nil {
			return t, err
		}
	}
	return t, nil
}

// render is the answer for one call; values are XML-escaped as attribute
// values. accountSID must satisfy validAccountSID: it becomes a path segment
// of the stream URL as it is.
func (t answerTemplates) render(record bool, accountSID, from, to, token string) string {
	doc := t.withoutRecording
	if record {
		doc = t.withRecording
	}
	return strings.NewReplacer(placeholderAccount, xmlAttr(accountSID),
		placeholderFrom, xmlAttr(from), placeholderTo, xmlAttr(to), placeholderToken, xmlAttr(token)).Replace(doc)
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

func xmlAttr(v string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(v)) // a strings.Builder never fails to write
	return b.String()
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
