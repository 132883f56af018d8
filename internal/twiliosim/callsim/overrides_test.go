package callsim

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/twilio/twilio-go/twiml"
)

func TestParseOverrides(t *testing.T) {
	defaults := Overrides{ConnectTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, TotalTimeout: 15 * time.Second,
		RetryCount: 1, RetryPolicy: []string{"ct", "rt"}}
	for _, tc := range []struct {
		url  string
		want Overrides
		err  string
	}{
		{"https://h/p", defaults, ""},
		{"https://h/p?a=1#", defaults, ""},
		{"https://h/p?to=%2B1#rc=3&rp=5xx,ct,rt&tt=15000", Overrides{ConnectTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
			TotalTimeout: 15 * time.Second, RetryCount: 3, RetryPolicy: []string{"5xx", "ct", "rt"}}, ""},
		{"https://h/p#ct=1000&rt=3000&rc=2&rp=all&e=ashburn&sni=y", Overrides{ConnectTimeout: time.Second, ReadTimeout: 3 * time.Second,
			TotalTimeout: 15 * time.Second, RetryCount: 2, RetryPolicy: []string{"all"}}, ""},
		{"https://h/p#rc=0", Overrides{ConnectTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, TotalTimeout: 15 * time.Second,
			RetryPolicy: []string{"ct", "rt"}}, ""},
		{"https://h/p#rc=6", Overrides{}, "rc"},
		{"https://h/p#tt=15001", Overrides{}, "tt"},
		{"https://h/p#ct=99", Overrides{}, "ct"},
		{"https://h/p#rt=x", Overrides{}, "rt"},
		{"https://h/p#rp=5xx,later", Overrides{}, "11243"},
		{"https://h/p#retries=3", Overrides{}, "unknown key"},
	} {
		got, err := ParseOverrides(tc.url)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseOverrides(%q) error = %v, want one mentioning %q", tc.url, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseOverrides(%q): %v", tc.url, err)
			continue
		}
		NewWithT(t).Expect(got).To(Equal(tc.want), tc.url)
	}
}

// recordingOnly is TwiML that only starts a recording with callback.
func recordingOnly(t testing.TB, callback string) string {
	t.Helper()
	doc, err := twiml.Voice([]twiml.Element{&twiml.VoiceStart{InnerElements: []twiml.Element{
		&twiml.VoiceRecording{RecordingStatusCallback: callback},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// The recording callback is retried as its URL's fragment asks: each retry
// is the same callback (RecordingSid), signed over the URL without the
// fragment; what the fragment does not ask for is not retried.
func TestRecordingCallbackHonoursConnectionOverrides(t *testing.T) {
	const overrides = "#rc=3&rp=5xx,ct,rt&tt=15000"
	for _, tc := range []struct {
		name     string
		fragment string
		answers  []int
		attempts int
		status   int
		ok       bool
	}{
		{"5xx retried until accepted", overrides, []int{503, 500}, 3, 204, true},
		{"5xx retried rc times", "#rc=2&rp=5xx", []int{503, 503, 503, 503}, 3, 503, false},
		{"no fragment: 5xx not retried (default rp ct,rt)", "", []int{503}, 1, 503, false},
		{"4xx not retried under rp=5xx", overrides, []int{404}, 1, 404, false},
		{"4xx retried under rp=4xx", "#rc=1&rp=4xx", []int{429}, 2, 204, true},
		{"rc=0 never retries", "#rc=0&rp=all", []int{503}, 1, 503, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			app := newFakeApp(t, recordingOnly(t, callbackURL+"?to=%2B1"+tc.fragment), func(a *fakeApp) { a.recordingAnswers = tc.answers })
			res, err := Place(context.Background(), app.call())
			if tc.ok {
				g.Expect(err).NotTo(HaveOccurred())
			} else {
				g.Expect(err).To(MatchError(ErrWebhookFailed))
			}
			g.Expect(res.RecordingCallbackAttempts).To(Equal(tc.attempts))
			g.Expect(res.RecordingCallbackStatus).To(Equal(tc.status))
			_, recordings, _, _, _ := app.snapshot()
			g.Expect(recordings).To(HaveLen(tc.attempts))
			for _, r := range recordings {
				g.Expect(r.sigOK).To(BeTrue(), "signed over the URL without the fragment")
				g.Expect(r.form.Get("RecordingSid")).To(Equal(res.RecordingSID))
				g.Expect(r.form.Get("to")).To(BeEmpty(), "the query is in the URL, not the form")
			}
		})
	}
}

// A connection that fails (ct) is retried under rp=ct, within tt.
func TestRecordingCallbackRetriesConnectFailures(t *testing.T) {
	g := NewWithT(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	dead := ln.Addr().String()
	_ = ln.Close()
	var dials atomic.Int32
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	app := newFakeApp(t, recordingOnly(t, "https://down.example.com/recording#rc=2&rp=ct"))
	c := app.call()
	c.HTTPClient = hc
	c.RewriteURL = func(u *url.URL) *url.URL {
		if u.Host == "down.example.com" {
			u.Scheme, u.Host = "http", dead
			return u
		}
		return app.rewrite(u)
	}
	res, err := Place(context.Background(), c)
	g.Expect(err).To(HaveOccurred())
	g.Expect(isConnectFailure(err)).To(BeTrue(), err.Error())
	g.Expect(res.RecordingCallbackAttempts).To(Equal(3))
	g.Expect(res.RecordingCallbackStatus).To(BeZero())
	g.Expect(dials.Load()).To(BeNumerically(">=", 3), "the voice webhook and three callback attempts")
}

// An answer slower than rt counts as a read failure (rt), and tt bounds
// every attempt together.
func TestRecordingCallbackReadTimeoutAndTotalTime(t *testing.T) {
	g := NewWithT(t)
	var hits atomic.Int32
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)
	app := newFakeApp(t, recordingOnly(t, "https://slow.example.com/recording#ct=100&rt=200&rc=5&rp=rt&tt=700"))
	c := app.call()
	c.RewriteURL = func(u *url.URL) *url.URL {
		if u.Host == "slow.example.com" {
			u.Scheme, u.Host = "http", slow.Listener.Addr().String()
			return u
		}
		return app.rewrite(u)
	}
	start := time.Now()
	res, err := Place(context.Background(), c)
	g.Expect(err).To(HaveOccurred())
	g.Expect(errors.Is(err, context.DeadlineExceeded)).To(BeTrue(), err.Error())
	g.Expect(time.Since(start)).To(BeNumerically("<", 3*time.Second), "tt ends the retries")
	g.Expect(res.RecordingCallbackAttempts).To(BeNumerically(">=", 2), "rt is retried")
	g.Expect(res.RecordingCallbackAttempts).To(BeNumerically("<", 6), "within tt")
}

// An invalid fragment is refused before anything is sent.
func TestRecordingCallbackInvalidOverrides(t *testing.T) {
	g := NewWithT(t)
	app := newFakeApp(t, recordingOnly(t, callbackURL+"#rp=sometimes"))
	res, err := Place(context.Background(), app.call())
	g.Expect(err).To(MatchError(ContainSubstring("11243")))
	g.Expect(res.RecordingCallbackAttempts).To(BeZero())
	_, recordings, _, _, _ := app.snapshot()
	g.Expect(recordings).To(BeEmpty())
}
