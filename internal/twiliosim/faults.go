package twiliosim

import (
	"context"
	"math/rand/v2"
	"net"
	"net/http"
	"time"
)

// Stats summarises the traffic seen since New.
type Stats struct {
	// MaxInFlight is the highest number of admitted requests that were in
	// flight at the same time for one account (requests answered 429 by the
	// concurrency limit are not admitted).
	MaxInFlight int
	// TooMany counts the answers with status 429.
	TooMany int
	// Total counts every request received.
	Total int
}

// Fault describes how FailNext makes a request fail.
type Fault struct {
	// Status is the HTTP status; 0 means 500 (502 with HTMLBody).
	Status int
	// Code is the Twilio error code; 0 means 20000+Status (20003 for 401).
	Code int
	// Message is the error message; "" means the HTTP status text.
	Message string
	// Reset closes the connection without answering; the other fields are
	// then ignored.
	Reset bool
	// HTMLBody answers a non-JSON, proxy-style HTML body instead of Twilio's
	// error JSON, which twilio-go cannot decode into a TwilioRestError.
	HTMLBody bool
	// LoseAnswer processes the request as usual (a write is applied) and
	// then closes the connection before the answer is sent: the fault that
	// tells a client nothing about whether its write happened. The other
	// fields are then ignored.
	LoseAnswer bool
}

type failRule struct {
	match     func(Request) bool
	fault     Fault
	remaining int
}

// SetLatency delays every admitted request by d before it is processed. The
// delay ends early when the client goes away; the request is then logged
// with status 499 and not processed.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetConcurrencyLimit caps the requests in flight per account (the account
// in the request path). A request above the cap is answered at once with 429
// and Twilio's error 20429, and is not processed. n <= 0 removes the cap.
func (s *Server) SetConcurrencyLimit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit = n
}

// SetErrorRate makes the given fraction (0..1) of admitted requests fail at
// random with 500 and Twilio's error 20500, without being processed.
func (s *Server) SetErrorRate(rate float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errorRate = rate
}

// SetResetRate makes the given fraction (0..1) of admitted requests fail at
// random by closing the connection without an answer, without being
// processed. Note that Go's http.Transport may resend an idempotent request
// (GET, DELETE) once when a reused connection is closed this way.
func (s *Server) SetResetRate(rate float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetRate = rate
}

// SetLostAnswerRate makes the given fraction (0..1) of admitted requests be
// processed and then have their answer lost (see Fault.LoseAnswer).
func (s *Server) SetLostAnswerRate(rate float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lostRate = rate
}

// FailNext makes the next `times` admitted requests for which match returns
// true fail with f instead of being processed. match sees the Request before
// processing (Status is 0) and must not modify it; nil matches every
// request. Rules are tried in the order they were added; a request consumes
// at most one.
func (s *Server) FailNext(match func(Request) bool, f Fault, times int) {
	if times <= 0 {
		return
	}
	if match == nil {
		match = func(Request) bool { return true }
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rules = append(s.rules, &failRule{match: match, fault: f, remaining: times})
}

// Stats returns the traffic statistics.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// takeFault consumes the first FailNext rule that matches req. Matchers run
// outside the lock so that they may call the Server.
func (s *Server) takeFault(req Request) (Fault, bool) {
	s.mu.Lock()
	live := s.rules[:0]
	for _, r := range s.rules {
		if r.remaining > 0 {
			live = append(live, r)
		}
	}
	s.rules = live
	rules := append([]*failRule(nil), live...)
	s.mu.Unlock()

	for _, r := range rules {
		if !r.match(req) {
			continue
		}
		s.mu.Lock()
		taken := r.remaining > 0
		if taken {
			r.remaining--
		}
		s.mu.Unlock()
		if taken {
			return r.fault, true
		}
	}
	return Fault{}, false
}

// faultResponse renders a Fault that does not reset the connection.
func faultResponse(f Fault) response {
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
		if f.HTMLBody {
			status = http.StatusBadGateway
		}
	}
	if f.HTMLBody {
		text := http.StatusText(status)
		body := "<html>\r\n<head><title>" + itoa(status) + " " + text + "</title></head>\r\n" +
			"<body>\r\n<center><h1>" + itoa(status) + " " + text + "</h1></center>\r\n</body>\r\n</html>\r\n"
		return response{status: status, contentType: "text/html", body: []byte(body)}
	}
	code := f.Code
	if code == 0 {
		code = 20000 + status
		if status == http.StatusUnauthorized {
			code = 20003
		}
	}
	msg := f.Message
	if msg == "" {
		msg = http.StatusText(status)
	}
	return errorResponse(status, code, msg)
}

// reset logs the request with status 0 and closes its connection without
// answering: with an RST when the connection can be hijacked, otherwise by
// aborting the handler.
func (s *Server) reset(w http.ResponseWriter, req *Request) {
	req.Status, req.ErrorCode = 0, 0
	s.abort(w, req)
}

// loseAnswer logs a processed request with the status it would have been
// answered with, then closes the connection without answering.
func (s *Server) loseAnswer(w http.ResponseWriter, req *Request, resp response) {
	req.Status, req.ErrorCode, req.AnswerLost = resp.status, resp.code, true
	s.abort(w, req)
}

func (s *Server) abort(w http.ResponseWriter, req *Request) {
	s.record(*req)
	defer s.callHook(*req)
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return ctx.Err() == nil
}

// roll reports true with probability rate.
func roll(rate float64) bool {
	return rate > 0 && rand.Float64() < rate
}
