package twiliosim

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Server is an emulated Twilio REST API. It implements http.Handler, so it can
// be served by Start, by httptest.NewServer or by any http.Server. All methods
// are safe for concurrent use.
type Server struct {
	mu sync.Mutex

	accounts     map[string]*accountRecord
	accountOrder []string          // account SIDs in the order they were added
	apiKeys      map[string]apiKey // SK sid -> key

	numbers map[string]*Number // by SID
	phones  map[string]string  // E.164 -> SID of current numbers
	order   []string           // SIDs of current numbers, in creation order
	seq     map[string]uint64  // every number SID ever added -> creation sequence
	nextSeq uint64

	services []*MessagingService // in the order they were added

	avail availableStore // numbers on sale (purchase.go)

	log  []Request
	hook func(Request)

	latency   time.Duration
	limit     int
	errorRate float64
	resetRate float64
	lostRate  float64
	rules     []*failRule
	inFlight  map[string]int
	stats     Stats

	httpServer *http.Server
}

// New returns an empty emulator with no accounts, no numbers, no latency and
// no limits. Add accounts with AddAccount before sending requests.
func New() *Server {
	return &Server{
		accounts: map[string]*accountRecord{},
		apiKeys:  map[string]apiKey{},
		numbers:  map[string]*Number{},
		phones:   map[string]string{},
		seq:      map[string]uint64{},
		inFlight: map[string]int{},
	}
}

// Start listens on addr (for example "127.0.0.1:0") and serves the emulator
// in the background until Close. It returns the base URL, such as
// "http://127.0.0.1:43127", to which clients must send their requests.
func (s *Server) Start(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("twiliosim: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	if s.httpServer != nil {
		s.mu.Unlock()
		_ = ln.Close()
		return "", errors.New("twiliosim: server already started")
	}
	s.httpServer = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

// Close stops the listener started by Start and closes its connections,
// which cancels the requests still in flight. It is a no-op when the server
// was not started.
func (s *Server) Close() error {
	s.mu.Lock()
	srv := s.httpServer
	s.httpServer = nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	if err := srv.Close(); err != nil {
		return fmt.Errorf("twiliosim: close: %w", err)
	}
	return nil
}

// route is what the path says about a request, beyond Request.Kind.
type route struct {
	known bool // the path names an emulated resource (the method may still be wrong)
}

// ServeHTTP answers one REST request the way Twilio would, after applying the
// configured concurrency limit, latency and faults, and records it in the
// request log.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, rt, parseErr := newRequest(r)

	s.mu.Lock()
	s.stats.Total++
	latency, resetRate, errorRate, lostRate := s.latency, s.resetRate, s.errorRate, s.lostRate
	key := req.AccountSID
	admitted := s.limit <= 0 || s.inFlight[key] < s.limit
	if admitted {
		s.inFlight[key]++
		s.stats.MaxInFlight = max(s.stats.MaxInFlight, s.inFlight[key])
	}
	w.Header().Set("Twilio-Concurrent-Requests", strconv.Itoa(s.inFlight[key]))
	s.mu.Unlock()

	if !admitted {
		s.answer(w, &req, errorResponse(http.StatusTooManyRequests, 20429, "Too Many Requests"))
		return
	}
	// The slot is freed once the request is processed, before its answer is
	// written: a client that reads the answer and sends its next request at
	// once must find its slot free, as it would at Twilio.
	release := sync.OnceFunc(func() { s.release(key) })
	defer release()

	if !sleep(r.Context(), latency) {
		req.Status = statusClientGone
		s.record(req)
		s.callHook(req)
		return
	}
	loseAnswer := false
	if f, ok := s.takeFault(req); ok {
		switch {
		case f.LoseAnswer:
			loseAnswer = true
		case f.Reset:
			s.reset(w, &req)
			return
		default:
			release()
			s.answer(w, &req, faultResponse(f))
			return
		}
	}
	if roll(resetRate) {
		s.reset(w, &req)
		return
	}
	if roll(errorRate) {
		release()
		s.answer(w, &req, errorResponse(http.StatusInternalServerError, 20500, "Internal Server Error"))
		return
	}
	if parseErr != nil {
		release()
		s.answer(w, &req, errorResponse(http.StatusBadRequest, codeBadRequest, "Unable to parse the request body"))
		return
	}
	resp := s.handle(r, req, rt)
	if loseAnswer || roll(lostRate) {
		s.loseAnswer(w, &req, resp)
		return
	}
	release()
	s.answer(w, &req, resp)
}

// handle authenticates and dispatches a request that passed every fault.
func (s *Server) handle(r *http.Request, req Request, rt route) response {
	user, pass, _ := r.BasicAuth()
	s.mu.Lock()
	authSID, ok := s.authenticate(user, pass)
	allowed := ok && s.mayActOn(authSID, req.AccountSID)
	s.mu.Unlock()
	switch {
	case !ok:
		return authError()
	case !rt.known:
		return notFound(req.Path)
	case req.Kind == KindOther:
		return errorResponse(http.StatusMethodNotAllowed, 20004, "Method not allowed")
	case !allowed && !messagingKind(req.Kind):
		return authError()
	}
	if messagingKind(req.Kind) {
		req.AccountSID = authSID // the Messaging API's paths name no account
	}
	switch req.Kind {
	case KindListServices:
		return s.listServices(req)
	case KindListServiceNumbers:
		return s.listServicePhones(req)
	case KindFetchAccount:
		return s.fetchAccount(req)
	case KindListNumbers:
		return s.listNumbers(req)
	case KindFetchNumber:
		return s.fetchNumber(req)
	case KindUpdateNumber:
		return s.updateNumber(req)
	case KindDeleteNumber:
		return s.deleteNumber(req)
	case KindListAvailable:
		return s.listAvailable(req)
	default: // KindCreateNumber
		return s.createNumber(req)
	}
}

// release frees the concurrency slot taken by an admitted request.
func (s *Server) release(key string) {
	s.mu.Lock()
	s.inFlight[key]--
	if s.inFlight[key] <= 0 {
		delete(s.inFlight, key)
	}
	s.mu.Unlock()
}

// answer records the request with the response's status and code, writes the
// response, and then calls the OnRequest hook. The log is written first so a
// client that has read the answer always finds its request in the log.
func (s *Server) answer(w http.ResponseWriter, req *Request, resp response) {
	req.Status, req.ErrorCode = resp.status, resp.code
	s.record(*req)
	resp.write(w)
	_ = http.NewResponseController(w).Flush()
	s.callHook(*req)
}

// newRequest describes an incoming request for the log and for fault
// matching. It parses a form body; the returned error reports a body that
// could not be parsed.
func newRequest(r *http.Request) (Request, route, error) {
	req := Request{
		Time:   time.Now(),
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.Query(),
		Form:   url.Values{},
	}
	req.AuthUser, _, _ = r.BasicAuth()
	var err error
	if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		if err = r.ParseForm(); err == nil {
			req.Form = r.PostForm
		}
	}
	var rt route
	req.Kind, req.AccountSID, req.NumberSID, rt.known = classify(r.Method, r.URL.Path)
	if req.Kind == KindOther && !rt.known {
		req.Kind, req.ServiceSID, rt.known = classifyMessaging(r.Method, r.URL.Path)
	}
	return req, rt, err
}

const apiPrefix = "/2010-04-01/Accounts/"

// classifyMessaging maps a Messaging API v1 method and path to a request
// kind and the service SID in the path.
func classifyMessaging(method, path string) (kind, serviceSID string, known bool) {
	rest, ok := strings.CutPrefix(path, "/v1/Services")
	if !ok {
		return KindOther, "", false
	}
	parts := strings.Split(strings.TrimPrefix(rest, "/"), "/")
	switch {
	case rest == "":
		kind = KindListServices
	case len(parts) == 2 && parts[1] == "PhoneNumbers":
		kind, serviceSID = KindListServiceNumbers, parts[0]
	default:
		return KindOther, "", false
	}
	if method != http.MethodGet {
		return KindOther, serviceSID, true
	}
	return kind, serviceSID, true
}

func messagingKind(kind string) bool {
	return kind == KindListServices || kind == KindListServiceNumbers
}

// classify maps a method and path to a request kind and the SIDs in the
// path. known reports whether the path names an emulated resource.
func classify(method, path string) (kind, accountSID, numberSID string, known bool) {
	rest, ok := strings.CutPrefix(path, apiPrefix)
	if !ok {
		return KindOther, "", "", false
	}
	parts := strings.Split(rest, "/")
	switch {
	case len(parts) == 1 && strings.HasSuffix(parts[0], ".json"):
		accountSID = strings.TrimSuffix(parts[0], ".json")
		if method == http.MethodGet {
			return KindFetchAccount, accountSID, "", true
		}
		return KindOther, accountSID, "", true
	case len(parts) == 2 && parts[1] == "IncomingPhoneNumbers.json":
		switch method {
		case http.MethodGet:
			return KindListNumbers, parts[0], "", true
		case http.MethodPost:
			return KindCreateNumber, parts[0], "", true
		}
		return KindOther, parts[0], "", true
	case len(parts) == 3 && parts[1] == "IncomingPhoneNumbers" && strings.HasSuffix(parts[2], ".json"):
		numberSID = strings.TrimSuffix(parts[2], ".json")
		switch method {
		case http.MethodGet:
			return KindFetchNumber, parts[0], numberSID, true
		case http.MethodPost:
			return KindUpdateNumber, parts[0], numberSID, true
		case http.MethodDelete:
			return KindDeleteNumber, parts[0], numberSID, true
		}
		return KindOther, parts[0], numberSID, true
	case len(parts) == 4 && parts[1] == "AvailablePhoneNumbers" && availableTypes[parts[3]]:
		if method == http.MethodGet {
			return KindListAvailable, parts[0], "", true
		}
		return KindOther, parts[0], "", true
	}
	if len(parts) > 0 {
		accountSID = parts[0]
	}
	return KindOther, accountSID, "", false
}
