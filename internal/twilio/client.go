// Package twilio is the operator's narrow seam to Twilio's REST API, built on
// twilio-go. It adds what twilio-go lacks: contexts and timeouts, a per-account
// concurrency budget, backoff on 429, errors classified once, a base-URL
// override (emulator, proxies), and a list-once inventory cache.
package twilio

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"time"

	twclient "github.com/twilio/twilio-go/client"
	openapi "github.com/twilio/twilio-go/rest/api/v2010"
	messaging "github.com/twilio/twilio-go/rest/messaging/v1"
)

// Client lists the Twilio calls the operator makes. Implementations are safe
// for concurrent use and every method honours ctx. Numbers are bought and
// released only through BuyNumber and ReleaseNumber, which the controller
// calls only under an account's purchasing rails (purchases and releases
// allowed on the TwilioAccount, a TwilioPhoneNumber that asks for it); no
// method ever transfers a number to another account.
type Client interface {
	// VerifyAccount fetches the account, proving the credentials work.
	VerifyAccount(ctx context.Context) (AccountInfo, error)
	// ListNumbers returns every incoming phone number of the account (pages of 1000).
	ListNumbers(ctx context.Context) ([]Number, error)
	// FindNumber returns the number with exactly this E.164 value, or ErrNumberNotFound.
	FindNumber(ctx context.Context, e164 string) (Number, error)
	// FetchNumber reads one number by SID.
	FetchNumber(ctx context.Context, sid string) (Number, error)
	// UpdateRouting writes the non-nil fields of u and returns the number as Twilio has it after.
	UpdateRouting(ctx context.Context, sid string, u RoutingUpdate) (Number, error)
	// MessagingServices lists the account's Messaging Services with the
	// numbers in each (one list call, plus one per service).
	MessagingServices(ctx context.Context) ([]MessagingService, error)
	// AvailableNumbers searches the numbers on sale (one request, one page).
	AvailableNumbers(ctx context.Context, q AvailableQuery) ([]AvailableNumber, error)
	// BuyNumber buys e164 with the non-nil fields of u set in the purchase
	// itself. It is retried only after a 429; any other failure may hide a
	// purchase, so look the number up before buying again.
	BuyNumber(ctx context.Context, e164, friendlyName string, u RoutingUpdate) (Number, error)
	// ReleaseNumber gives the number back to Twilio (DELETE).
	ReleaseNumber(ctx context.Context, sid string) error
}

// Config says how to reach one Twilio account.
type Config struct {
	// AccountSID is the account whose numbers are managed (AC…).
	AccountSID string
	// Username and Password authenticate REST calls: the account SID and auth
	// token, or an API key SID (SK…) and its secret.
	Username, Password string
	// APIURL, when set, replaces https://api.twilio.com (scheme and host).
	APIURL string
	// Edge and Region select Twilio's edge location and region.
	Edge, Region string
	// MaxConcurrent caps in-flight requests to this account (default 10).
	// Ignored when Budget is set.
	MaxConcurrent int
	// Budget, when set, is the in-flight cap shared with every other client
	// of the same Twilio account (Twilio limits concurrency per account, not
	// per credential).
	Budget *Budget
	// Timeout bounds one HTTP request (default 10s).
	Timeout time.Duration
	// MaxRetries is how often a 429 is retried inside the client before it is
	// returned as ClassWait (default 4).
	MaxRetries int
	// Transport is the base HTTP transport (default http.DefaultTransport).
	Transport http.RoundTripper
}

// REST is the twilio-go backed Client.
type REST struct {
	cfg     Config
	base    twclient.Client
	baseURL *url.URL
	sem     *Budget
	// backoff returns how long to wait before retry n (0-based) after a 429.
	backoff func(n int) time.Duration
}

var _ Client = (*REST)(nil)

// New validates cfg and builds a client. It makes no request.
func New(cfg Config) (*REST, error) {
	if cfg.AccountSID == "" || cfg.Username == "" || cfg.Password == "" {
		return nil, errors.New("account SID, username and password are required")
	}
	if cfg.MaxConcurrent <= 0 {
		cfg.MaxConcurrent = 10
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	} else if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 4
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	if cfg.Budget == nil {
		cfg.Budget = NewBudget(cfg.MaxConcurrent)
	}
	r := &REST{cfg: cfg, sem: cfg.Budget, backoff: jitteredBackoff}
	if cfg.APIURL != "" {
		u, err := url.Parse(cfg.APIURL)
		if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
			return nil, fmt.Errorf("API URL %q: want http(s)://host[:port]", cfg.APIURL)
		}
		r.baseURL = u
	}
	r.base = twclient.Client{Credentials: twclient.NewCredentials(cfg.Username, cfg.Password)}
	r.base.SetAccountSid(cfg.AccountSID)
	return r, nil
}

// Budget caps the Twilio requests in flight for one account. Share one
// Budget among all clients of the same account SID.
type Budget struct {
	slots chan struct{}
}

// NewBudget returns a budget of n concurrent requests (at least 1).
func NewBudget(n int) *Budget {
	return &Budget{slots: make(chan struct{}, max(n, 1))}
}

// Size is the number of concurrent requests the budget allows.
func (b *Budget) Size() int { return cap(b.slots) }

// jitteredBackoff: 100ms, 200ms, 400ms … capped at 3s, each with ±50% jitter.
func jitteredBackoff(n int) time.Duration {
	d := 100 * time.Millisecond << min(n, 5)
	d = min(d, 3*time.Second)
	return d/2 + rand.N(d)
}

// handler returns a twilio-go request handler whose HTTP requests carry ctx
// and go to the configured base URL. twilio-go's methods take no context, so
// the context is attached in the transport of a per-call copy of the (small)
// client.
func (r *REST) handler(ctx context.Context) *twclient.RequestHandler {
	c := r.base
	c.HTTPClient = &http.Client{
		Transport: &callTransport{ctx: ctx, base: r.cfg.Transport, target: r.baseURL},
		Timeout:   r.cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	h := twclient.NewRequestHandler(&c)
	h.Edge, h.Region = r.cfg.Edge, r.cfg.Region
	return h
}

type callTransport struct {
	ctx    context.Context
	base   http.RoundTripper
	target *url.URL
}

func (t *callTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(t.ctx)
	if t.target != nil {
		req.URL.Scheme, req.URL.Host = t.target.Scheme, t.target.Host
		req.Host = t.target.Host
	}
	return t.base.RoundTrip(req)
}

// do runs one call of the v2010 API (see doWith).
func (r *REST) do(ctx context.Context, kind, op string, call func(*openapi.ApiService) error) error {
	return r.doWith(ctx, kind, op, func(h *twclient.RequestHandler) error { return call(openapi.NewApiService(h)) })
}

// doWith runs one Twilio call inside the account's concurrency budget,
// retrying 429s with jittered backoff (the slot is released while waiting).
func (r *REST) doWith(ctx context.Context, kind, op string, call func(*twclient.RequestHandler) error) error {
	for attempt := 0; ; attempt++ {
		select {
		case r.sem.slots <- struct{}{}:
		case <-ctx.Done():
			return &Error{Op: op, Class: ClassTransient, Err: ctx.Err()}
		}
		start := time.Now()
		err := classify(op, call(r.handler(ctx)))
		<-r.sem.slots
		observe(r.cfg.AccountSID, kind, err, time.Since(start))
		if err == nil || ClassOf(err) != ClassWait || attempt >= r.cfg.MaxRetries {
			return err
		}
		t := time.NewTimer(r.backoff(attempt))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

// VerifyAccount implements Client.
func (r *REST) VerifyAccount(ctx context.Context) (AccountInfo, error) {
	var info AccountInfo
	err := r.do(ctx, "FetchAccount", "fetch account", func(api *openapi.ApiService) error {
		a, err := api.FetchAccount(r.cfg.AccountSID)
		if err != nil {
			return err
		}
		info = AccountInfo{SID: str(a.Sid), FriendlyName: str(a.FriendlyName), Type: str(a.Type), Status: str(a.Status)}
		return nil
	})
	return info, err
}

// ListNumbers implements Client.
func (r *REST) ListNumbers(ctx context.Context) ([]Number, error) {
	return r.list(ctx, "ListNumbers", "list IncomingPhoneNumbers", "")
}

// FindNumber implements Client. Twilio's PhoneNumber filter also matches
// partial numbers, so the result is compared exactly.
func (r *REST) FindNumber(ctx context.Context, e164 string) (Number, error) {
	nums, err := r.list(ctx, "FindNumber", "find IncomingPhoneNumber "+e164, e164)
	if err != nil {
		return Number{}, err
	}
	for _, n := range nums {
		if n.PhoneNumber == e164 {
			return n, nil
		}
	}
	return Number{}, fmt.Errorf("find %s: %w", e164, ErrNumberNotFound)
}

func (r *REST) list(ctx context.Context, kind, op, filter string) ([]Number, error) {
	var out []Number
	err := r.do(ctx, kind, op, func(api *openapi.ApiService) error {
		p := &openapi.ListIncomingPhoneNumberParams{}
		p.SetPathAccountSid(r.cfg.AccountSID)
		p.SetPageSize(1000)
		if filter != "" {
			p.SetPhoneNumber(filter)
		}
		res, err := api.ListIncomingPhoneNumber(p)
		if err != nil {
			return err
		}
		out = make([]Number, 0, len(res))
		for i := range res {
			out = append(out, numberFrom(&res[i]))
		}
		return nil
	})
	return out, err
}

// FetchNumber implements Client.
func (r *REST) FetchNumber(ctx context.Context, sid string) (Number, error) {
	var n Number
	err := r.do(ctx, "FetchNumber", "fetch IncomingPhoneNumber "+sid, func(api *openapi.ApiService) error {
		p := &openapi.FetchIncomingPhoneNumberParams{}
		p.SetPathAccountSid(r.cfg.AccountSID)
		res, err := api.FetchIncomingPhoneNumber(sid, p)
		if err != nil {
			return err
		}
		n = numberFrom(res)
		return nil
	})
	return n, err
}

// UpdateRouting implements Client.
func (r *REST) UpdateRouting(ctx context.Context, sid string, u RoutingUpdate) (Number, error) {
	var n Number
	err := r.do(ctx, "UpdateNumber", "update IncomingPhoneNumber "+sid, func(api *openapi.ApiService) error {
		res, err := api.UpdateIncomingPhoneNumber(sid, updateParams(r.cfg.AccountSID, u))
		if err != nil {
			return err
		}
		n = numberFrom(res)
		return nil
	})
	return n, err
}

// MessagingServices implements Client.
func (r *REST) MessagingServices(ctx context.Context) ([]MessagingService, error) {
	var out []MessagingService
	err := r.doWith(ctx, "ListMessagingServices", "list Messaging Services", func(h *twclient.RequestHandler) error {
		p := &messaging.ListServiceParams{}
		p.SetPageSize(1000)
		res, err := messaging.NewApiService(h).ListService(p)
		if err != nil {
			return err
		}
		out = make([]MessagingService, 0, len(res))
		for _, svc := range res {
			m := MessagingService{SID: str(svc.Sid), FriendlyName: str(svc.FriendlyName), InboundRequestURL: str(svc.InboundRequestUrl)}
			if svc.UseInboundWebhookOnNumber != nil {
				m.UseInboundWebhookOnNumber = *svc.UseInboundWebhookOnNumber
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i := range out {
		err := r.doWith(ctx, "ListMessagingServiceNumbers", "list the numbers of Messaging Service "+out[i].SID, func(h *twclient.RequestHandler) error {
			p := &messaging.ListPhoneNumberParams{}
			p.SetPageSize(1000)
			res, err := messaging.NewApiService(h).ListPhoneNumber(out[i].SID, p)
			if err != nil {
				return err
			}
			for _, n := range res {
				out[i].PhoneNumbers = append(out[i].PhoneNumbers, str(n.PhoneNumber))
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
