package twiliosim

import (
	"net/url"
	"time"
)

// Request kinds recorded in Request.Kind.
const (
	KindFetchAccount = "FetchAccount" // GET /Accounts/{Sid}.json
	KindListNumbers  = "ListNumbers"  // GET .../IncomingPhoneNumbers.json
	KindFetchNumber  = "FetchNumber"  // GET .../IncomingPhoneNumbers/{PN}.json
	KindUpdateNumber = "UpdateNumber" // POST .../IncomingPhoneNumbers/{PN}.json
	KindCreateNumber = "CreateNumber" // POST .../IncomingPhoneNumbers.json (purchase)
	KindDeleteNumber = "DeleteNumber" // DELETE .../IncomingPhoneNumbers/{PN}.json (release)
	// Messaging API v1 (messaging.twilio.com); AccountSID is the authenticated account's.
	KindListServices       = "ListServices"       // GET /v1/Services
	KindListServiceNumbers = "ListServiceNumbers" // GET /v1/Services/{MG}/PhoneNumbers
	KindOther              = "Other"              // anything else

	// KindListAvailable is a search for numbers on sale:
	// GET .../AvailablePhoneNumbers/{Country}/{Local|Mobile|TollFree}.json
	KindListAvailable = "ListAvailable"
)

// statusClientGone is the logged status of a request whose client went away
// while the emulator was applying latency; nothing was answered.
const statusClientGone = 499

// Request is one request received by the emulator, as recorded in the
// request log and passed to FailNext matchers and the OnRequest hook.
type Request struct {
	Time       time.Time  // when the request arrived
	Method     string     // HTTP method
	Path       string     // URL path, e.g. /2010-04-01/Accounts/AC…/IncomingPhoneNumbers.json
	Query      url.Values // decoded query string
	Form       url.Values // decoded form body (POST only; empty otherwise)
	AuthUser   string     // Basic auth user name (AC… or SK…), "" when absent
	Kind       string     // one of the Kind constants
	NumberSID  string     // PN… from the path, "" when none
	AccountSID string     // AC… from the path, "" when none
	ServiceSID string     // MG… from a Messaging API path, "" when none
	// Status is the HTTP status answered: 0 when the connection was reset
	// without an answer, 499 when the client went away first. It is 0 in
	// FailNext matchers, which run before the request is processed.
	Status int
	// ErrorCode is the Twilio error code of an error answer, 0 otherwise.
	ErrorCode int
	// AnswerLost is true when the request was processed (Status is what it
	// was answered with) but the connection was then reset before the
	// answer reached the client.
	AnswerLost bool
}

// Requests returns a copy of the request log, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.log))
	for i, r := range s.log {
		r.Query = cloneValues(r.Query)
		r.Form = cloneValues(r.Form)
		out[i] = r
	}
	return out
}

// ResetRequests empties the request log. Stats are not reset.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = nil
}

// CountRequests returns how many logged requests have the given Kind.
func (s *Server) CountRequests(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.log {
		if r.Kind == kind {
			n++
		}
	}
	return n
}

// OnRequest sets a hook that is called, possibly from many goroutines at
// once, after each request has been answered (or reset). nil removes it. The
// hook must not modify the Request's maps.
func (s *Server) OnRequest(hook func(Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = hook
}

// record appends a finished request to the log and updates the statistics.
func (s *Server) record(req Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log = append(s.log, req)
	if req.Status == 429 {
		s.stats.TooMany++
	}
}

// callHook calls the OnRequest hook, if any, outside the lock.
func (s *Server) callHook(req Request) {
	s.mu.Lock()
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		hook(req)
	}
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
