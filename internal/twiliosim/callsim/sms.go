package callsim

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultMediaContentType is the content type of an SMS's media when
// SMS.MediaContentTypes does not give one.
const DefaultMediaContentType = "image/jpeg"

// SMS describes one inbound message (SMS, or MMS with media) as Twilio
// delivers it to a number's SmsUrl. URL, AuthToken and AccountSID are
// required. SendSMS does not modify the SMS.
type SMS struct {
	// URL is the number's SmsUrl (https://, or http:// for local runs). It is
	// signed as given, without its fragment, whose connection overrides are
	// honoured (see ParseOverrides).
	URL string
	// AuthToken is the token of the account that owns the number.
	AuthToken string
	// AccountSID is sent as AccountSid.
	AccountSID string
	// MessagingServiceSID is sent as MessagingServiceSid when set.
	MessagingServiceSID string
	// From and To are the sender and the number the message was sent to.
	From, To string
	// Body is the message's text.
	Body string
	// MediaURLs are sent as MediaUrl0…, with MediaContentTypes (by index;
	// DefaultMediaContentType where it has none) as MediaContentType0…, and
	// their number as NumMedia. Twilio sends at most 10.
	MediaURLs         []string
	MediaContentTypes []string
	// MessageSID is generated ("SM" + 32 hex digits) when empty.
	MessageSID string
	// HTTPClient, RewriteURL and WebhookTimeout are as in Call: the client
	// making the request (nil: one with WebhookTimeout that follows no
	// redirects), a map from the public URL to where the request is
	// delivered, and the bound of each attempt (0: DefaultWebhookTimeout).
	HTTPClient     *http.Client
	RewriteURL     func(*url.URL) *url.URL
	WebhookTimeout time.Duration
}

// SMSResult is what the SMS webhook answered.
type SMSResult struct {
	// MessageSID is the message's SID (generated unless SMS.MessageSID was set).
	MessageSID string
	// Status, ContentType and Body are the last attempt's answer (Status 0
	// when none came): messaging TwiML, of which the simulator reads the
	// replies (Replies) and runs nothing else.
	Status      int
	ContentType string
	Body        string
	// Attempts is how many times the webhook was sent (see ParseOverrides).
	Attempts int
	// Replies are the messages Twilio would send back, from the <Message>
	// verbs of a 2xx answer, in order; empty for <Response/>, an empty
	// body, or an answer whose TwiML does not parse (see ReplyError).
	Replies []SMSReply
	// ReplyError is why the body of a 2xx answer is not messaging TwiML
	// (Twilio error 12100: it sends nothing); nil otherwise.
	ReplyError error
}

// SMSReply is a <Message> of the answer: the reply Twilio sends to the
// sender (or to the number its to attribute names).
type SMSReply struct {
	// Body is the message's text: the <Message>'s own text, or the text of
	// its <Body> nouns when it has any (the nested form).
	Body string
	// MediaURLs are the texts of its <Media> nouns, in order.
	MediaURLs []string
	// To and From are its to and from attributes, empty when absent.
	To, From string
}

// parseReplies reads the <Message> verbs of a messaging TwiML document.
func parseReplies(body []byte) ([]SMSReply, error) {
	var root node
	if err := xml.Unmarshal(body, &root); err != nil {
		return nil, fmt.Errorf("parse messaging TwiML (Twilio error 12100): %w", err)
	}
	if root.XMLName.Local != "Response" {
		return nil, fmt.Errorf("parse messaging TwiML (Twilio error 12100): root element is <%s>, want <Response>", root.XMLName.Local)
	}
	var out []SMSReply
	for _, verb := range root.Children {
		if verb.XMLName.Local != "Message" {
			continue
		}
		r := SMSReply{Body: verb.Text, To: verb.attr("to"), From: verb.attr("from")}
		nested := false
		for _, noun := range verb.Children {
			switch noun.XMLName.Local {
			case "Body":
				if !nested {
					r.Body, nested = "", true
				}
				r.Body += noun.Text
			case "Media":
				r.MediaURLs = append(r.MediaURLs, strings.TrimSpace(noun.Text))
			}
		}
		if len(verb.Children) > 0 && !nested {
			// Text around nested nouns is layout, not the body.
			r.Body = strings.TrimSpace(r.Body)
		}
		out = append(out, r)
	}
	return out, nil
}

// maxSMSAnswerBytes bounds the SMS webhook's answer the simulator reads.
const maxSMSAnswerBytes = 64 << 10

// SendSMS delivers an inbound message the way Twilio does: a signed,
// form-encoded POST to the SmsUrl with MessageSid (and its deprecated
// copies SmsSid and SmsMessageSid), AccountSid, MessagingServiceSid (when
// set), From, To, Body, NumMedia, NumSegments 1, MediaUrl{N} and
// MediaContentType{N}, SmsStatus received and ApiVersion 2010-04-01
// (twilio-facts.md §6.3); retried per the URL's connection overrides. It
// returns the answer, and an error (wrapping ErrWebhookFailed for a non-2xx
// answer) when the last attempt failed. Twilio's geographic parameters
// (FromCity…) are not sent.
func SendSMS(ctx context.Context, m SMS) (SMSResult, error) {
	if err := checkWebhookURL(m.URL); err != nil {
		return SMSResult{}, fmt.Errorf("SMS URL: %w", err)
	}
	switch {
	case m.AuthToken == "":
		return SMSResult{}, errors.New("auth token is empty")
	case m.AccountSID == "":
		return SMSResult{}, errors.New("account SID is empty")
	case len(m.MediaURLs) > 10:
		return SMSResult{}, fmt.Errorf("%d media: Twilio sends at most 10", len(m.MediaURLs))
	}
	if m.MessageSID == "" {
		m.MessageSID = newSID("SM")
	}
	params := url.Values{
		"MessageSid":    {m.MessageSID},
		"SmsSid":        {m.MessageSID},
		"SmsMessageSid": {m.MessageSID},
		"AccountSid":    {m.AccountSID},
		"From":          {m.From},
		"To":            {m.To},
		"Body":          {m.Body},
		"NumMedia":      {strconv.Itoa(len(m.MediaURLs))},
		"NumSegments":   {"1"},
		"SmsStatus":     {"received"},
		"ApiVersion":    {"2010-04-01"},
	}
	if m.MessagingServiceSID != "" {
		params.Set("MessagingServiceSid", m.MessagingServiceSID)
	}
	for i, u := range m.MediaURLs {
		ct := DefaultMediaContentType
		if i < len(m.MediaContentTypes) && m.MediaContentTypes[i] != "" {
			ct = m.MediaContentTypes[i]
		}
		params.Set("MediaUrl"+strconv.Itoa(i), u)
		params.Set("MediaContentType"+strconv.Itoa(i), ct)
	}
	// The call's request machinery, with the message's token, client and URL map.
	c, err := Call{VoiceURL: m.URL, AuthToken: m.AuthToken, AccountSID: m.AccountSID, HTTPClient: m.HTTPClient,
		RewriteURL: m.RewriteURL, WebhookTimeout: m.WebhookTimeout}.withDefaults()
	if err != nil {
		return SMSResult{}, err
	}
	a, attempts, err := sendWithOverrides(ctx, c, http.MethodPost, m.URL, params, maxSMSAnswerBytes)
	res := SMSResult{MessageSID: m.MessageSID, Status: a.status, Body: string(a.body), Attempts: attempts}
	if a.header != nil {
		res.ContentType = a.header.Get("Content-Type")
	}
	if err != nil {
		return res, fmt.Errorf("SMS webhook: %w", err)
	}
	if len(strings.TrimSpace(res.Body)) > 0 {
		res.Replies, res.ReplyError = parseReplies(a.body)
	}
	return res, nil
}
