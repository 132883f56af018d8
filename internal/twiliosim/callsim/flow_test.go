package callsim

import (
	"context"
	"net"
	"net/url"
	"testing"

	. "github.com/onsi/gomega"
	"github.com/twilio/twilio-go/twiml"
)

// voiceDoc renders verbs as a TwiML document.
func voiceDoc(t testing.TB, verbs ...twiml.Element) string {
	t.Helper()
	doc, err := twiml.Voice(verbs)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// When the server closes the stream, the call goes on after </Connect>
// (twilio-facts.md §4.2): Say, Dial and Redirect run, in order, and Dial
// ends the call.
func TestPlaceRunsVerbsAfterTheServerClosesTheStream(t *testing.T) {
	t.Run("say and dial", func(t *testing.T) {
		g := NewWithT(t)
		app := newFakeApp(t, streamTwiML(t,
			&twiml.VoiceSay{Message: "Sorry."},
			&twiml.VoiceDial{InnerElements: []twiml.Element{&twiml.VoiceNumber{PhoneNumber: "+14155550150"}}},
			&twiml.VoiceSay{Message: "never said"},
		), func(a *fakeApp) { a.markOnStart = true })
		c := app.call()
		c.MediaFrames, c.FramePeriod = 1_000_000, 0

		res, err := Place(context.Background(), c)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.ServerClosed).To(BeTrue())
		g.Expect(res.StopSent).To(BeFalse())
		g.Expect(res.Say).To(Equal("Sorry."))
		g.Expect(res.Dialed).To(Equal("+14155550150"))
		g.Expect(res.Hangup).To(BeFalse())
		g.Expect(res.Verbs).To(Equal([]string{"Start", "Connect", "Say", "Dial", "Say"}))
		g.Expect(res.RecordingCallbackStatus).To(Equal(204), "the recording callback follows the end of the call")
	})
	t.Run("redirect", func(t *testing.T) {
		g := NewWithT(t)
		app := newFakeApp(t, streamTwiML(t, &twiml.VoiceRedirect{Url: "/after"}), func(a *fakeApp) {
			a.markOnStart = true
			a.pages = map[string]string{"/after": voiceDoc(t, &twiml.VoiceSay{Message: "redirected"}, &twiml.VoiceHangup{})}
		})
		c := app.call()
		c.MediaFrames, c.FramePeriod = 1_000_000, 0

		res, err := Place(context.Background(), c)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.ServerClosed).To(BeTrue())
		g.Expect(res.Redirects).To(Equal([]string{publicBase + "/after"}))
		g.Expect(res.Say).To(Equal("redirected"))
		g.Expect(res.Hangup).To(BeTrue())
		hits := app.hits()
		g.Expect(hits).To(HaveLen(1))
		g.Expect(hits[0].method).To(Equal("POST"))
		g.Expect(hits[0].sigOK).To(BeTrue())
	})
	t.Run("handshake refused", func(t *testing.T) {
		g := NewWithT(t)
		app := newFakeApp(t, streamTwiML(t, &twiml.VoiceSay{Message: "No stream today."}, &twiml.VoiceHangup{}),
			func(a *fakeApp) { a.wsSignedURL = publicBase + "/stream" })
		res, err := Place(context.Background(), app.call())
		g.Expect(err).To(MatchError(ContainSubstring("31920")))
		g.Expect(res.StreamHandshakeStatus).To(Equal(403))
		g.Expect(res.Say).To(Equal("No stream today."))
		g.Expect(res.Hangup).To(BeTrue())
	})
}

// When the caller hangs up, the call is over: nothing after </Connect> runs.
func TestPlaceCallerHangUpEndsTheCall(t *testing.T) {
	g := NewWithT(t)
	app := newFakeApp(t, streamTwiML(t,
		&twiml.VoiceSay{Message: "fallback"},
		&twiml.VoiceRedirect{Url: "/after"},
		&twiml.VoiceDial{Number: "+14155550150"},
	), func(a *fakeApp) {
		a.pages = map[string]string{"/after": voiceDoc(t, &twiml.VoiceSay{Message: "redirected"})}
	})
	c := app.call()
	c.MediaFrames = 3

	res, err := Place(context.Background(), c)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.StopSent).To(BeTrue())
	g.Expect(res.ServerClosed).To(BeFalse())
	g.Expect(res.Verbs).To(Equal([]string{"Start", "Connect", "Say", "Redirect", "Dial"}))
	g.Expect(res.Say).To(BeEmpty())
	g.Expect(res.Redirects).To(BeEmpty())
	g.Expect(res.Dialed).To(BeEmpty())
	g.Expect(res.Hangup).To(BeFalse())
	g.Expect(app.hits()).To(BeEmpty())
	g.Expect(res.RecordingCallbackStatus).To(Equal(204))
}

// A chain of redirects, relative and absolute, POST and GET, each signed as
// Twilio signs it (checked by twilio-go's RequestValidator), each answer
// replacing the rest of the document that redirected.
func TestPlaceFollowsRedirects(t *testing.T) {
	g := NewWithT(t)
	app := newFakeApp(t, voiceDoc(t, &twiml.VoiceSay{Message: "one"}, &twiml.VoiceRedirect{Url: "r1"}, &twiml.VoiceSay{Message: "never"}),
		func(a *fakeApp) {
			a.pages = map[string]string{
				"/r1": voiceDoc(t, &twiml.VoiceRedirect{Url: publicBase + "/r2?step=2", Method: "GET"}),
				"/r2": voiceDoc(t, &twiml.VoiceSay{Message: "two"}, &twiml.VoiceHangup{}, &twiml.VoiceSay{Message: "never"}),
			}
		})
	res, err := Place(context.Background(), app.call())
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res.Verbs).To(Equal([]string{"Say", "Redirect", "Say"}), "the voice webhook's document")
	g.Expect(res.Redirects).To(Equal([]string{publicBase + "/r1", publicBase + "/r2?step=2"}))
	g.Expect(res.Say).To(Equal("one two"))
	g.Expect(res.Hangup).To(BeTrue())

	hits := app.hits()
	g.Expect(hits).To(HaveLen(2))
	g.Expect([]string{hits[0].method, hits[1].method}).To(Equal([]string{"POST", "GET"}))
	g.Expect(hits[1].path).To(HavePrefix("/r2?step=2&"))
	for _, h := range hits {
		g.Expect(h.sigOK).To(BeTrue(), h.path)
		g.Expect(h.form.Get("CallSid")).To(Equal(res.CallSID))
		g.Expect(h.form.Get("AccountSid")).To(Equal(testAccount))
		g.Expect(h.form.Get("To")).To(Equal("+14155550199"))
		g.Expect(h.form.Get("From")).To(Equal("+14155550100"))
	}
}

func TestPlaceRedirectsAreBounded(t *testing.T) {
	g := NewWithT(t)
	app := newFakeApp(t, voiceDoc(t, &twiml.VoiceRedirect{Url: "/loop"}),
		func(a *fakeApp) {
			a.pages = map[string]string{"/loop": voiceDoc(t, &twiml.VoiceRedirect{Url: "/loop"})}
		})
	res, err := Place(context.Background(), app.call())
	g.Expect(err).To(MatchError(ContainSubstring("more than 10 <Redirect>s")))
	g.Expect(res.Redirects).To(HaveLen(MaxRedirects))
	g.Expect(app.hits()).To(HaveLen(MaxRedirects))
}

func TestPlaceRedirectFailure(t *testing.T) {
	g := NewWithT(t)
	app := newFakeApp(t, voiceDoc(t, &twiml.VoiceRedirect{Url: "/missing"}, &twiml.VoiceSay{Message: "never"}))
	res, err := Place(context.Background(), app.call())
	g.Expect(err).To(MatchError(ErrWebhookFailed))
	g.Expect(err).To(MatchError(ContainSubstring("<Redirect> to " + publicBase + "/missing answered 404")))
	g.Expect(res.Redirects).To(Equal([]string{publicBase + "/missing"}))
	g.Expect(res.Say).To(BeEmpty())
}

// When the voice webhook fails and the number has a fallback URL, Twilio
// requests it with ErrorCode and ErrorUrl and runs its TwiML.
func TestPlaceUsesTheFallbackURL(t *testing.T) {
	fallback := voiceDoc(t, &twiml.VoiceSay{Message: "fallback speaking"}, &twiml.VoiceHangup{})
	for _, method := range []string{"", "GET"} {
		t.Run("voice webhook 500, fallback method "+method, func(t *testing.T) {
			g := NewWithT(t)
			app := newFakeApp(t, streamTwiML(t), func(a *fakeApp) {
				a.voiceStatus = 500
				a.pages = map[string]string{"/fallback": fallback}
			})
			c := app.call()
			c.FallbackURL, c.FallbackMethod = publicBase+"/fallback", method

			res, err := Place(context.Background(), c)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(res.VoiceStatus).To(Equal(500))
			g.Expect(res.UsedFallbackURL).To(BeTrue())
			g.Expect(res.FallbackStatus).To(Equal(200))
			g.Expect(res.Verbs).To(Equal([]string{"Say", "Hangup"}))
			g.Expect(res.Say).To(Equal("fallback speaking"))
			g.Expect(res.Hangup).To(BeTrue())
			g.Expect(res.StreamSID).To(BeEmpty())

			hits := app.hits()
			g.Expect(hits).To(HaveLen(1))
			want := map[string]string{"": "POST", "GET": "GET"}[method]
			g.Expect(hits[0].method).To(Equal(want))
			g.Expect(hits[0].sigOK).To(BeTrue())
			g.Expect(hits[0].form.Get("ErrorCode")).To(Equal("11200"))
			g.Expect(hits[0].form.Get("ErrorUrl")).To(Equal(voiceURL))
			g.Expect(hits[0].form.Get("CallSid")).To(Equal(res.CallSID))
			g.Expect(hits[0].form.Get("To")).To(Equal("+14155550199"))
		})
	}
	t.Run("voice URL unreachable", func(t *testing.T) {
		g := NewWithT(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		g.Expect(err).NotTo(HaveOccurred())
		closed := ln.Addr().String()
		g.Expect(ln.Close()).To(Succeed())
		app := newFakeApp(t, "", func(a *fakeApp) { a.pages = map[string]string{"/fallback": fallback} })
		c := app.call()
		c.VoiceURL, c.FallbackURL = "https://down.example.com/voice", publicBase+"/fallback"
		c.RewriteURL = func(u *url.URL) *url.URL {
			if u.Host == "down.example.com" {
				u.Scheme, u.Host = "http", closed
				return u
			}
			return app.rewrite(u)
		}
		res, err := Place(context.Background(), c)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.VoiceStatus).To(BeZero())
		g.Expect(res.UsedFallbackURL).To(BeTrue())
		g.Expect(res.Say).To(Equal("fallback speaking"))
		g.Expect(app.hits()[0].form.Get("ErrorUrl")).To(Equal("https://down.example.com/voice"))
	})
	t.Run("the fallback fails too", func(t *testing.T) {
		g := NewWithT(t)
		app := newFakeApp(t, streamTwiML(t), func(a *fakeApp) {
			a.voiceStatus = 500
			a.pages = map[string]string{"/fallback": "not TwiML"}
		})
		c := app.call()
		c.FallbackURL = publicBase + "/fallback"
		res, err := Place(context.Background(), c)
		g.Expect(err).To(MatchError(ErrWebhookFailed))
		g.Expect(err).To(MatchError(ContainSubstring("voice webhook answered 500")))
		g.Expect(err).To(MatchError(ContainSubstring("fallback URL: webhook failed")))
		g.Expect(res.UsedFallbackURL).To(BeTrue())
		g.Expect(res.Say).To(BeEmpty())
	})
	t.Run("without a fallback URL the call fails", func(t *testing.T) {
		g := NewWithT(t)
		app := newFakeApp(t, streamTwiML(t), func(a *fakeApp) { a.voiceStatus = 500 })
		res, err := Place(context.Background(), app.call())
		g.Expect(err).To(MatchError(ErrWebhookFailed))
		g.Expect(res.UsedFallbackURL).To(BeFalse())
		g.Expect(app.hits()).To(BeEmpty())
	})
}
