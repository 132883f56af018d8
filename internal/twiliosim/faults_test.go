package twiliosim

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"
)

// TestConcurrencyLimit holds the admitted requests in an endless latency so
// that the outcome does not depend on timing: exactly `limit` requests are
// admitted and every other one is answered 429/20429 at once.
func TestConcurrencyLimit(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100"})
	const limit, clients = 2, 6
	s.SetConcurrencyLimit(limit)
	s.SetLatency(time.Hour)
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	errs := make(chan error, clients)
	for range clients {
		go func() {
			_, err := rc.Api.FetchIncomingPhoneNumber(n.SID, nil)
			errs <- err
		}()
	}
	for range clients - limit {
		tre := restError(receive(t, errs))
		g.Expect(tre).NotTo(BeNil())
		g.Expect(tre.Status).To(Equal(http.StatusTooManyRequests))
		g.Expect(tre.Code).To(Equal(20429))
		g.Expect(tre.Message).To(Equal("Too Many Requests"))
		g.Expect(tre.MoreInfo).To(Equal("https://www.twilio.com/docs/errors/20429"))
	}
	st := s.Stats()
	g.Expect(st.TooMany).To(Equal(clients - limit))
	g.Expect(st.MaxInFlight).To(Equal(limit))
	g.Expect(st.Total).To(Equal(clients))
	for _, r := range s.Requests() {
		g.Expect(r).To(And(HaveField("Status", 429), HaveField("ErrorCode", 20429), HaveField("Kind", KindFetchNumber)))
	}

	// Closing the server ends the two requests stuck in the latency.
	g.Expect(s.Close()).To(Succeed())
	for range limit {
		err := receive(t, errs)
		g.Expect(err).To(HaveOccurred())
		g.Expect(restError(err)).To(BeNil())
	}
}

// receive returns the next error from errs. The deadline only turns a
// broken emulator into a failure instead of a hang; it synchronises nothing.
func receive(t *testing.T, errs <-chan error) error {
	t.Helper()
	select {
	case err := <-errs:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("no answer within 30s")
		return nil
	}
}

func TestConcurrencyLimitWithFiniteLatency(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100"})
	s.SetConcurrencyLimit(3)
	s.SetLatency(20 * time.Millisecond)
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	errs := make(chan error, 20)
	for range 20 {
		go func() {
			_, err := rc.Api.FetchIncomingPhoneNumber(n.SID, nil)
			errs <- err
		}()
	}
	served, tooMany := 0, 0
	for range 20 {
		if err := <-errs; err == nil {
			served++
		} else {
			g.Expect(restError(err)).To(HaveField("Code", 20429))
			tooMany++
		}
	}
	st := s.Stats()
	g.Expect(served).To(BeNumerically(">", 0))
	g.Expect(st.TooMany).To(Equal(tooMany))
	g.Expect(st.MaxInFlight).To(BeNumerically("<=", 3))
	g.Expect(s.CountRequests(KindFetchNumber)).To(Equal(20))
}

func TestLatencyEndsWhenTheClientGoesAway(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	s.SetLatency(time.Hour)
	done := make(chan Request, 1)
	s.OnRequest(func(r Request) { done <- r })

	req, err := http.NewRequest(http.MethodGet, base+"/2010-04-01/Accounts/"+testAccount+".json", nil)
	g.Expect(err).NotTo(HaveOccurred())
	req.SetBasicAuth(testAccount, testToken)
	_, err = (&http.Client{Timeout: 50 * time.Millisecond}).Do(req)
	g.Expect(err).To(HaveOccurred())

	var r Request
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the request was not abandoned within 30s")
	}
	g.Expect(r.Status).To(Equal(statusClientGone))
	g.Expect(r.Kind).To(Equal(KindFetchAccount))
}

func TestFailNextFailsExactlyOneMatchingUpdate(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100", VoiceURL: "https://old.example.com/voice"})
	other := s.AddNumber(Number{PhoneNumber: "+14155550101"})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)
	s.FailNext(func(r Request) bool {
		return r.Kind == KindUpdateNumber && r.NumberSID == n.SID && r.Form.Has("VoiceUrl")
	}, Fault{Status: 503, Code: 20503, Message: "Service Unavailable"}, 1)

	// Requests that do not match are not affected.
	_, err := rc.Api.FetchIncomingPhoneNumber(n.SID, nil)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = rc.Api.UpdateIncomingPhoneNumber(other.SID, (&openapi.UpdateIncomingPhoneNumberParams{}).SetVoiceUrl("https://new.example.com/voice"))
	g.Expect(err).NotTo(HaveOccurred())

	params := (&openapi.UpdateIncomingPhoneNumberParams{}).SetVoiceUrl("https://new.example.com/voice")
	_, err = rc.Api.UpdateIncomingPhoneNumber(n.SID, params)
	tre := restError(err)
	g.Expect(tre).NotTo(BeNil(), "error %v", err)
	g.Expect(tre.Status).To(Equal(503))
	g.Expect(tre.Code).To(Equal(20503))
	g.Expect(mustNumber(t, s, n.SID)).To(Equal(n), "the failed update was not applied")

	got, err := rc.Api.UpdateIncomingPhoneNumber(n.SID, params)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(got.VoiceUrl).To(Equal(ptr("https://new.example.com/voice")))

	statuses := []int{}
	for _, r := range s.Requests() {
		statuses = append(statuses, r.Status)
	}
	g.Expect(statuses).To(Equal([]int{200, 200, 503, 200}))
	g.Expect(s.Requests()[2].ErrorCode).To(Equal(20503))
}

func TestFailNextCountsUnderConcurrency(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100"})
	s.FailNext(func(r Request) bool { return r.Kind == KindFetchNumber }, Fault{Status: 500}, 3)
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	errs := make(chan error, 12)
	for range 12 {
		go func() {
			_, err := rc.Api.FetchIncomingPhoneNumber(n.SID, nil)
			errs <- err
		}()
	}
	failed := 0
	for range 12 {
		if err := receive(t, errs); err != nil {
			g.Expect(restError(err)).To(And(HaveField("Status", 500), HaveField("Code", 20500)))
			failed++
		}
	}
	g.Expect(failed).To(Equal(3))
}

func TestFailNextHTMLBodyIsNotATwilioError(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	s.FailNext(nil, Fault{HTMLBody: true}, 1)
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	_, err := rc.Api.FetchAccount(testAccount)
	g.Expect(err).To(MatchError(ContainSubstring("502")))
	g.Expect(restError(err)).To(BeNil())
	g.Expect(s.Requests()[0].Status).To(Equal(502))

	_, err = rc.Api.FetchAccount(testAccount)
	g.Expect(err).NotTo(HaveOccurred())
}

func TestFailNextResetAndResetRate(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100"})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	s.FailNext(func(r Request) bool { return r.Kind == KindUpdateNumber }, Fault{Reset: true}, 1)
	_, err := rc.Api.UpdateIncomingPhoneNumber(n.SID, (&openapi.UpdateIncomingPhoneNumberParams{}).SetVoiceUrl("https://new.example.com"))
	g.Expect(err).To(HaveOccurred())
	g.Expect(restError(err)).To(BeNil())
	g.Expect(mustNumber(t, s, n.SID).VoiceURL).To(BeEmpty())

	s.SetResetRate(1)
	_, err = rc.Api.FetchIncomingPhoneNumber(n.SID, nil)
	g.Expect(err).To(HaveOccurred())
	var uerr *url.Error
	g.Expect(err).To(BeAssignableToTypeOf(uerr), "a transport error, not a Twilio error: %v", err)
	for _, r := range s.Requests() {
		g.Expect(r.Status).To(Equal(0))
	}

	s.SetResetRate(0)
	_, err = rc.Api.FetchIncomingPhoneNumber(n.SID, nil)
	g.Expect(err).NotTo(HaveOccurred())
}

// A lost answer is the fault that tells the client nothing: the write is
// applied, the client sees a transport error, and the log says both.
func TestLoseAnswerAppliesTheWrite(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100"})
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	s.FailNext(func(r Request) bool { return r.Kind == KindUpdateNumber }, Fault{LoseAnswer: true}, 1)
	_, err := rc.Api.UpdateIncomingPhoneNumber(n.SID, (&openapi.UpdateIncomingPhoneNumberParams{}).SetVoiceUrl("https://new.example.com"))
	g.Expect(err).To(HaveOccurred())
	g.Expect(restError(err)).To(BeNil(), "a transport error, not a Twilio answer")
	g.Expect(mustNumber(t, s, n.SID).VoiceURL).To(Equal("https://new.example.com"))
	reqs := s.Requests()
	g.Expect(reqs).To(HaveLen(1))
	g.Expect(reqs[0]).To(And(HaveField("Status", 200), HaveField("AnswerLost", true)))

	s.SetLostAnswerRate(1)
	_, err = rc.Api.UpdateIncomingPhoneNumber(n.SID, (&openapi.UpdateIncomingPhoneNumberParams{}).SetVoiceUrl("https://newer.example.com"))
	g.Expect(err).To(HaveOccurred())
	g.Expect(mustNumber(t, s, n.SID).VoiceURL).To(Equal("https://newer.example.com"))
	s.SetLostAnswerRate(0)
	_, err = rc.Api.FetchIncomingPhoneNumber(n.SID, nil)
	g.Expect(err).NotTo(HaveOccurred())
}

func TestErrorRate(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	s.SetErrorRate(1)
	rc := newTwilio(t, base, testAccount, testToken, testAccount)

	_, err := rc.Api.FetchAccount(testAccount)
	g.Expect(restError(err)).To(And(HaveField("Status", 500), HaveField("Code", 20500)))
	s.SetErrorRate(0)
	_, err = rc.Api.FetchAccount(testAccount)
	g.Expect(err).NotTo(HaveOccurred())
}

func TestRequestLog(t *testing.T) {
	g := NewWithT(t)
	s, base := startSim(t)
	n := s.AddNumber(Number{PhoneNumber: "+14155550100"})
	var hooked []string
	hookDone := make(chan struct{}, 10)
	s.OnRequest(func(r Request) { hooked = append(hooked, r.Kind); hookDone <- struct{}{} })
	rc := newTwilio(t, base, testKey, testSecret, testAccount)

	_, err := rc.Api.ListIncomingPhoneNumber((&openapi.ListIncomingPhoneNumberParams{}).SetPhoneNumber("+14155550100"))
	g.Expect(err).NotTo(HaveOccurred())
	<-hookDone
	_, err = rc.Api.UpdateIncomingPhoneNumber(n.SID, (&openapi.UpdateIncomingPhoneNumberParams{}).
		SetVoiceUrl("https://new.example.com/voice").SetVoiceMethod("POST"))
	g.Expect(err).NotTo(HaveOccurred())
	<-hookDone

	reqs := s.Requests()
	g.Expect(reqs).To(HaveLen(2))
	g.Expect(reqs[0]).To(And(HaveField("Kind", KindListNumbers), HaveField("Method", "GET"),
		HaveField("AccountSID", testAccount), HaveField("AuthUser", testKey), HaveField("Status", 200)))
	g.Expect(reqs[1]).To(And(HaveField("Kind", KindUpdateNumber), HaveField("Method", "POST"),
		HaveField("NumberSID", n.SID), HaveField("Path", numberURI(testAccount, n.SID))))
	g.Expect(reqs[1].Form).To(Equal(url.Values{"VoiceUrl": {"https://new.example.com/voice"}, "VoiceMethod": {"POST"}}))
	g.Expect(reqs[1].Time).NotTo(BeZero())
	g.Expect(hooked).To(Equal([]string{KindListNumbers, KindUpdateNumber}))

	// The log is a copy.
	reqs[1].Form.Set("VoiceUrl", "mutated")
	g.Expect(s.Requests()[1].Form.Get("VoiceUrl")).To(Equal("https://new.example.com/voice"))

	s.ResetRequests()
	g.Expect(s.Requests()).To(BeEmpty())
	g.Expect(s.CountRequests(KindUpdateNumber)).To(Equal(0))
	g.Expect(s.Stats().Total).To(Equal(2))
}
