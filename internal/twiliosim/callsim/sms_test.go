package callsim

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/twilio/twilio-go/client"
)

// smsApp plays a messaging application behind https://voice.example.com/sms:
// it checks each request's signature with twilio-go's RequestValidator and
// answers the statuses in answers, then 200 with twiml (<Response/> unless
// newSMSAppAnswering set it).
type smsApp struct {
	srv     *httptest.Server
	answers []int
	twiml   string

	mu       sync.Mutex
	requests []signedForm
}

func newSMSApp(t testing.TB, answers ...int) *smsApp {
	return newSMSAppAnswering(t, `<?xml version="1.0" encoding="UTF-8"?><Response/>`, answers...)
}

func newSMSAppAnswering(t testing.TB, twiml string, answers ...int) *smsApp {
	a := &smsApp{answers: answers, twiml: twiml}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		rv := client.NewRequestValidator(testToken)
		ok := rv.ValidateBody(publicBase+r.URL.RequestURI(), body, r.Header.Get(SignatureHeader))
		a.mu.Lock()
		a.requests = append(a.requests, signedForm{method: r.Method, form: form, sigOK: ok && r.Header.Get("Content-Type") == "application/x-www-form-urlencoded"})
		n := len(a.requests)
		a.mu.Unlock()
		if !ok {
			http.Error(w, "invalid signature", http.StatusForbidden)
			return
		}
		if n <= len(a.answers) {
			http.Error(w, "failing on purpose", a.answers[n-1])
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		_, _ = io.WriteString(w, a.twiml)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *smsApp) sms(fragment string) SMS {
	return SMS{
		URL: publicBase + "/sms?tenant=a" + fragment, AuthToken: testToken, AccountSID: testAccount,
		From: "+15005550006", To: "+14155550100", Body: "Hello <there> & good day",
		RewriteURL: func(u *url.URL) *url.URL {
			target, _ := url.Parse(a.srv.URL)
			u.Scheme, u.Host = "http", target.Host
			return u
		},
	}
}

func (a *smsApp) seen() []signedForm {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]signedForm(nil), a.requests...)
}

func TestSendSMS(t *testing.T) {
	g := NewWithT(t)
	app := newSMSApp(t)
	m := app.sms("")
	m.MediaURLs = []string{"https://api.twilio.com/media/1", "https://api.twilio.com/media/2"}
	m.MediaContentTypes = []string{"image/png"}
	m.MessagingServiceSID = "MG0123456789abcdef0123456789abcdef"
	res, err := SendSMS(context.Background(), m)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.MessageSID).To(MatchRegexp(`^SM[0-9a-f]{32}$`))
	g.Expect(res.Status).To(Equal(http.StatusOK))
	g.Expect(res.ContentType).To(HavePrefix("text/xml"))
	g.Expect(res.Body).To(ContainSubstring("<Response/>"))
	g.Expect(res.Attempts).To(Equal(1))
	g.Expect(res.Replies).To(BeEmpty())
	g.Expect(res.ReplyError).NotTo(HaveOccurred())

	reqs := app.seen()
	g.Expect(reqs).To(HaveLen(1))
	g.Expect(reqs[0].method).To(Equal(http.MethodPost))
	g.Expect(reqs[0].sigOK).To(BeTrue(), "signed, form-encoded")
	g.Expect(flatten(reqs[0].form)).To(Equal(map[string]string{
		"MessageSid": res.MessageSID, "SmsSid": res.MessageSID, "SmsMessageSid": res.MessageSID,
		"AccountSid": testAccount, "MessagingServiceSid": "MG0123456789abcdef0123456789abcdef",
		"From": "+15005550006", "To": "+14155550100", "Body": "Hello <there> & good day",
		"NumMedia": "2", "NumSegments": "1",
		"MediaUrl0": "https://api.twilio.com/media/1", "MediaContentType0": "image/png",
		"MediaUrl1": "https://api.twilio.com/media/2", "MediaContentType1": DefaultMediaContentType,
		"SmsStatus": "received", "ApiVersion": "2010-04-01",
	}))
}

// The webhook is retried as the SmsUrl's fragment asks, with the same
// MessageSid each time; a failure left after the retries is an error.
func TestSendSMSHonoursConnectionOverrides(t *testing.T) {
	g := NewWithT(t)
	app := newSMSApp(t, 503, 502)
	res, err := SendSMS(context.Background(), app.sms("#rc=3&rp=5xx,ct,rt&tt=15000"))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Attempts).To(Equal(3))
	g.Expect(res.Status).To(Equal(http.StatusOK))
	reqs := app.seen()
	g.Expect(reqs).To(HaveLen(3))
	for _, r := range reqs {
		g.Expect(r.sigOK).To(BeTrue())
		g.Expect(r.form.Get("MessageSid")).To(Equal(res.MessageSID))
	}

	app = newSMSApp(t, 503, 503)
	res, err = SendSMS(context.Background(), app.sms(""))
	g.Expect(err).To(MatchError(ErrWebhookFailed), "the default policy (ct,rt) does not retry 5xx")
	g.Expect(res.Attempts).To(Equal(1))
	g.Expect(res.Status).To(Equal(http.StatusServiceUnavailable))
}

func TestSendSMSValidates(t *testing.T) {
	g := NewWithT(t)
	app := newSMSApp(t)
	for name, edit := range map[string]func(*SMS){
		"relative URL": func(m *SMS) { m.URL = "/sms" },
		"no token":     func(m *SMS) { m.AuthToken = "" },
		"no account":   func(m *SMS) { m.AccountSID = "" },
		"11 media":     func(m *SMS) { m.MediaURLs = make([]string, 11) },
		"bad fragment": func(m *SMS) { m.URL += "#rc=9" },
	} {
		m := app.sms("")
		edit(&m)
		_, err := SendSMS(context.Background(), m)
		g.Expect(err).To(HaveOccurred(), name)
	}
	g.Expect(app.seen()).To(BeEmpty())
}

// The <Message> verbs of the answer are the replies Twilio sends: the
// message's text, or its <Body> nouns, and its <Media>, unescaped.
func TestSendSMSReadsReplies(t *testing.T) {
	g := NewWithT(t)
	app := newSMSAppAnswering(t, `<?xml version="1.0" encoding="UTF-8"?>
<Response>
  <Message>Thanks &lt;Ann&gt; &amp; co</Message>
  <Redirect>https://voice.example.com/next</Redirect>
  <Message to="+15005550009" from="+14155550100">
    <Body>See </Body><Body>attached</Body>
    <Media>https://cdn.example.com/a.png?x=1&amp;y=2</Media>
    <Media> https://cdn.example.com/b.jpg </Media>
  </Message>
  <Message><Media>https://cdn.example.com/c.gif</Media></Message>
</Response>`)
	res, err := SendSMS(context.Background(), app.sms(""))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.ReplyError).NotTo(HaveOccurred())
	g.Expect(res.Replies).To(Equal([]SMSReply{
		{Body: "Thanks <Ann> & co"},
		{Body: "See attached", MediaURLs: []string{"https://cdn.example.com/a.png?x=1&y=2", "https://cdn.example.com/b.jpg"},
			To: "+15005550009", From: "+14155550100"},
		{MediaURLs: []string{"https://cdn.example.com/c.gif"}},
	}))

	// An answer that is not TwiML: no reply, and why (the answer itself succeeded).
	for _, body := range []string{"Thanks!", "<Reply>x</Reply>"} {
		res, err = SendSMS(context.Background(), newSMSAppAnswering(t, body).sms(""))
		g.Expect(err).NotTo(HaveOccurred(), body)
		g.Expect(res.Replies).To(BeEmpty(), body)
		g.Expect(res.ReplyError).To(MatchError(ContainSubstring("12100")), body)
	}
	// An empty 200: nothing to send, and nothing wrong.
	res, err = SendSMS(context.Background(), newSMSAppAnswering(t, "").sms(""))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Replies).To(BeEmpty())
	g.Expect(res.ReplyError).NotTo(HaveOccurred())
}
