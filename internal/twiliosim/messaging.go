package twiliosim

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MessagingService is an emulated Messaging Service (Messaging API v1). Its
// inbound settings override those of the numbers in its sender pool unless
// UseInboundWebhookOnNumber is set.
type MessagingService struct {
	SID                       string // "MG" + 32 hex digits
	AccountSID                string
	FriendlyName              string
	InboundRequestURL         string
	InboundMethod             string // GET or POST
	UseInboundWebhookOnNumber bool
	// NumberSIDs are the IncomingPhoneNumbers (PN…) in the sender pool.
	NumberSIDs  []string
	DateCreated time.Time
}

// AddMessagingService adds a Messaging Service and returns it as stored. It
// generates the SID when empty, defaults AccountSID to the first account
// added, InboundMethod to POST and DateCreated to now.
func (s *Server) AddMessagingService(m MessagingService) MessagingService {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.SID == "" {
		m.SID = newSID("MG")
	}
	if m.AccountSID == "" && len(s.accountOrder) > 0 {
		m.AccountSID = s.accountOrder[0]
	}
	m.InboundMethod = orPOST(strings.ToUpper(m.InboundMethod))
	if m.DateCreated.IsZero() {
		m.DateCreated = time.Now()
	}
	m.NumberSIDs = slices.Clone(m.NumberSIDs)
	stored := m
	s.services = append(s.services, &stored)
	return m
}

// UpdateMessagingService changes a service out of band, as a Console edit
// would (adding a number to its sender pool, say). It reports whether the
// service exists.
func (s *Server) UpdateMessagingService(sid string, f func(*MessagingService)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.services {
		if m.SID == sid {
			f(m)
			m.SID = sid
			return true
		}
	}
	return false
}

// serviceOf returns the Messaging Service whose sender pool holds the number.
// The caller holds s.mu.
func (s *Server) serviceOf(numberSID string) (*MessagingService, bool) {
	for _, m := range s.services {
		if slices.Contains(m.NumberSIDs, numberSID) {
			return m, true
		}
	}
	return nil, false
}

// EffectiveSmsURL returns the webhook Twilio would call for an SMS to e164,
// with its method and the owning account, following Twilio's precedence: the
// number's Messaging Service (unless it defers to the number), then its SMS
// application (whose URL is not emulated: ""), then its SmsUrl.
func (s *Server) EffectiveSmsURL(e164 string) (smsURL, method, accountSID string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.byPhone(e164)
	if !ok {
		return "", "", "", false
	}
	if m, in := s.serviceOf(n.SID); in && !m.UseInboundWebhookOnNumber {
		return m.InboundRequestURL, m.InboundMethod, n.AccountSID, true
	}
	if n.SmsApplicationSID != "" {
		return "", "", n.AccountSID, true
	}
	return n.SmsURL, n.SmsMethod, n.AccountSID, true
}

const messagingBase = "https://messaging.twilio.com"

type serviceResource struct {
	SID                       string `json:"sid"`
	AccountSID                string `json:"account_sid"`
	FriendlyName              string `json:"friendly_name"`
	DateCreated               string `json:"date_created"`
	DateUpdated               string `json:"date_updated"`
	InboundRequestURL         string `json:"inbound_request_url"`
	InboundMethod             string `json:"inbound_method"`
	UseInboundWebhookOnNumber bool   `json:"use_inbound_webhook_on_number"`
	URL                       string `json:"url"`
}

type servicePhoneResource struct {
	SID          string   `json:"sid"`
	AccountSID   string   `json:"account_sid"`
	ServiceSID   string   `json:"service_sid"`
	DateCreated  string   `json:"date_created"`
	DateUpdated  string   `json:"date_updated"`
	PhoneNumber  string   `json:"phone_number"`
	CountryCode  string   `json:"country_code"`
	Capabilities []string `json:"capabilities"`
	URL          string   `json:"url"`
}

type pageMeta struct {
	FirstPageURL    string  `json:"first_page_url"`
	Key             string  `json:"key"`
	NextPageURL     *string `json:"next_page_url"`
	Page            int     `json:"page"`
	PageSize        int     `json:"page_size"`
	PreviousPageURL *string `json:"previous_page_url"`
	URL             string  `json:"url"`
}

// page cuts items to the page the query asks for (PageSize 1..1000, default
// 50; Page from 0) and builds the Messaging API's meta block around it.
func page[T any](items []T, req Request, path, key string) ([]T, pageMeta, *response) {
	size, err := intParam(req.Query, "PageSize", 50, 1, 1000)
	if err != nil {
		r := badRequest(err.Error())
		return nil, pageMeta{}, &r
	}
	n, err := intParam(req.Query, "Page", 0, 0, 1<<30)
	if err != nil {
		r := badRequest(err.Error())
		return nil, pageMeta{}, &r
	}
	link := func(p int) string {
		return messagingBase + path + "?PageSize=" + strconv.Itoa(size) + "&Page=" + strconv.Itoa(p)
	}
	from := min(n*size, len(items))
	to := min(from+size, len(items))
	meta := pageMeta{FirstPageURL: link(0), Key: key, Page: n, PageSize: size, URL: link(n)}
	if to < len(items) {
		next := link(n + 1)
		meta.NextPageURL = &next
	}
	if n > 0 {
		prev := link(n - 1)
		meta.PreviousPageURL = &prev
	}
	return items[from:to], meta, nil
}

// listServices answers GET /v1/Services for the authenticated account.
func (s *Server) listServices(req Request) response {
	s.mu.Lock()
	var items []serviceResource
	for _, m := range s.services {
		if m.AccountSID != req.AccountSID {
			continue
		}
		items = append(items, serviceResource{
			SID: m.SID, AccountSID: m.AccountSID, FriendlyName: m.FriendlyName,
			DateCreated: m.DateCreated.UTC().Format(time.RFC3339), DateUpdated: m.DateCreated.UTC().Format(time.RFC3339),
			InboundRequestURL: m.InboundRequestURL, InboundMethod: m.InboundMethod,
			UseInboundWebhookOnNumber: m.UseInboundWebhookOnNumber,
			URL:                       messagingBase + "/v1/Services/" + m.SID,
		})
	}
	s.mu.Unlock()
	items, meta, errResp := page(items, req, "/v1/Services", "services")
	if errResp != nil {
		return *errResp
	}
	return jsonResponse(http.StatusOK, struct {
		Services []serviceResource `json:"services"`
		Meta     pageMeta          `json:"meta"`
	}{orEmpty(items), meta})
}

// listServicePhones answers GET /v1/Services/{MG}/PhoneNumbers.
func (s *Server) listServicePhones(req Request) response {
	s.mu.Lock()
	var svc *MessagingService
	for _, m := range s.services {
		if m.SID == req.ServiceSID && m.AccountSID == req.AccountSID {
			svc = m
		}
	}
	if svc == nil {
		s.mu.Unlock()
		return notFound(req.Path)
	}
	var items []servicePhoneResource
	for _, sid := range svc.NumberSIDs {
		n, ok := s.numbers[sid]
		if !ok {
			continue
		}
		items = append(items, servicePhoneResource{
			SID: n.SID, AccountSID: n.AccountSID, ServiceSID: svc.SID,
			DateCreated: svc.DateCreated.UTC().Format(time.RFC3339), DateUpdated: svc.DateCreated.UTC().Format(time.RFC3339),
			PhoneNumber: n.PhoneNumber, CountryCode: "US", Capabilities: []string{"Voice", "SMS", "MMS"},
			URL: messagingBase + "/v1/Services/" + svc.SID + "/PhoneNumbers/" + n.SID,
		})
	}
	s.mu.Unlock()
	items, meta, errResp := page(items, req, "/v1/Services/"+req.ServiceSID+"/PhoneNumbers", "phone_numbers")
	if errResp != nil {
		return *errResp
	}
	return jsonResponse(http.StatusOK, struct {
		PhoneNumbers []servicePhoneResource `json:"phone_numbers"`
		Meta         pageMeta               `json:"meta"`
	}{orEmpty(items), meta})
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
