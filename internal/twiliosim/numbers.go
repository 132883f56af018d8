package twiliosim

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Number is an emulated IncomingPhoneNumber. Empty strings mean "unset".
type Number struct {
	SID                  string // "PN" + 32 hex digits
	AccountSID           string // owning account
	PhoneNumber          string // E.164
	FriendlyName         string
	VoiceURL             string
	VoiceMethod          string // GET or POST
	VoiceFallbackURL     string
	VoiceFallbackMethod  string // GET or POST
	StatusCallback       string
	StatusCallbackMethod string // GET or POST
	VoiceApplicationSID  string // AP…; takes precedence over VoiceURL
	TrunkSID             string // TK…; takes precedence over everything
	SmsURL               string
	SmsMethod            string // GET or POST
	SmsFallbackURL       string
	SmsFallbackMethod    string // GET or POST
	SmsApplicationSID    string // AP…; takes precedence over SmsURL
	DateCreated          time.Time
	DateUpdated          time.Time
}

// AddNumber adds a number and returns it as stored. It generates the SID when
// empty, defaults AccountSID to the first account added, the three methods
// to "POST", FriendlyName to the formatted number ("(415) 555-0100" for +1
// numbers, the E.164 otherwise) and the dates to now. It panics when the SID
// or the phone number is already present: that is a broken test setup.
func (s *Server) AddNumber(n Number) Number {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n.SID == "" {
		n.SID = newSID("PN")
	}
	if n.AccountSID == "" && len(s.accountOrder) > 0 {
		n.AccountSID = s.accountOrder[0]
	}
	n.VoiceMethod = orPOST(strings.ToUpper(n.VoiceMethod))
	n.VoiceFallbackMethod = orPOST(strings.ToUpper(n.VoiceFallbackMethod))
	n.StatusCallbackMethod = orPOST(strings.ToUpper(n.StatusCallbackMethod))
	n.SmsMethod = orPOST(strings.ToUpper(n.SmsMethod))
	n.SmsFallbackMethod = orPOST(strings.ToUpper(n.SmsFallbackMethod))
	if n.FriendlyName == "" {
		n.FriendlyName = formatPhone(n.PhoneNumber)
	}
	if n.DateCreated.IsZero() {
		n.DateCreated = time.Now()
	}
	if n.DateUpdated.IsZero() {
		n.DateUpdated = n.DateCreated
	}
	if _, dup := s.seq[n.SID]; dup {
		panic(fmt.Sprintf("twiliosim: number SID %s added twice", n.SID))
	}
	if _, dup := s.phones[n.PhoneNumber]; dup {
		panic(fmt.Sprintf("twiliosim: phone number %s added twice", n.PhoneNumber))
	}
	s.nextSeq++
	s.seq[n.SID] = s.nextSeq
	s.order = append(s.order, n.SID)
	s.phones[n.PhoneNumber] = n.SID
	stored := n
	s.numbers[n.SID] = &stored
	return n
}

// Number returns the number with the given SID.
func (s *Server) Number(sid string) (Number, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.numbers[sid]
	if !ok {
		return Number{}, false
	}
	return *n, true
}

// NumberByPhone returns the number with the given E.164 phone number.
func (s *Server) NumberByPhone(e164 string) (Number, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.byPhone(e164)
	if !ok {
		return Number{}, false
	}
	return *n, true
}

// UpdateNumber changes a number out of band, as a Console edit would: f gets
// a copy to modify, which then replaces the number (its SID cannot change;
// a changed PhoneNumber must stay unique).
// DateUpdated advances when f changed something and did not set it itself.
// It reports whether the number exists.
func (s *Server) UpdateNumber(sid string, f func(*Number)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.numbers[sid]
	if !ok {
		return false
	}
	next := *n
	f(&next)
	next.SID = sid
	if next != *n && next.DateUpdated.Equal(n.DateUpdated) {
		next.DateUpdated = later(n.DateUpdated)
	}
	if next.PhoneNumber != n.PhoneNumber {
		delete(s.phones, n.PhoneNumber)
		s.phones[next.PhoneNumber] = sid
	}
	*n = next
	return true
}

// EffectiveVoiceURL returns the webhook Twilio would call for an incoming
// call to e164, its method and the owning account. voiceURL and method are ""
// when a trunk or an application takes precedence over VoiceURL (or when no
// VoiceURL is set); ok is false when the number does not exist.
func (s *Server) EffectiveVoiceURL(e164 string) (voiceURL, method, accountSID string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.byPhone(e164)
	if !ok {
		return "", "", "", false
	}
	if n.TrunkSID != "" || n.VoiceApplicationSID != "" || n.VoiceURL == "" {
		return "", "", n.AccountSID, true
	}
	return n.VoiceURL, n.VoiceMethod, n.AccountSID, true
}

// byPhone finds a number by E.164. The caller holds s.mu.
func (s *Server) byPhone(e164 string) (*Number, bool) {
	n, ok := s.numbers[s.phones[e164]]
	return n, ok
}

// owned returns the number sid if it belongs to accountSID. The caller holds s.mu.
func (s *Server) owned(accountSID, sid string) (*Number, bool) {
	n, ok := s.numbers[sid]
	if !ok || n.AccountSID != accountSID {
		return nil, false
	}
	return n, true
}

// fetchNumber answers GET .../IncomingPhoneNumbers/{PN}.json.
func (s *Server) fetchNumber(req Request) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.owned(req.AccountSID, req.NumberSID)
	if !ok {
		return notFound(req.Path)
	}
	return jsonResponse(http.StatusOK, toNumberResource(*n))
}

// deleteNumber answers DELETE .../IncomingPhoneNumbers/{PN}.json by releasing
// the number.
func (s *Server) deleteNumber(req Request) response {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.owned(req.AccountSID, req.NumberSID)
	if !ok {
		return notFound(req.Path)
	}
	delete(s.phones, n.PhoneNumber)
	delete(s.numbers, req.NumberSID)
	s.order = slices.DeleteFunc(s.order, func(sid string) bool { return sid == req.NumberSID })
	return noContent()
}

// Update parameters that hold URLs or HTTP methods, and the fields they set
// (nil for parameters that are validated but not modelled).
var (
	urlParams = []struct {
		name  string
		field func(*Number) *string
	}{
		{"VoiceUrl", func(n *Number) *string { return &n.VoiceURL }},
		{"VoiceFallbackUrl", func(n *Number) *string { return &n.VoiceFallbackURL }},
		{"StatusCallback", func(n *Number) *string { return &n.StatusCallback }},
		{"SmsUrl", func(n *Number) *string { return &n.SmsURL }},
		{"SmsFallbackUrl", func(n *Number) *string { return &n.SmsFallbackURL }},
	}
	methodParams = []struct {
		name  string
		field func(*Number) *string
	}{
		{"VoiceMethod", func(n *Number) *string { return &n.VoiceMethod }},
		{"VoiceFallbackMethod", func(n *Number) *string { return &n.VoiceFallbackMethod }},
		{"StatusCallbackMethod", func(n *Number) *string { return &n.StatusCallbackMethod }},
		{"SmsMethod", func(n *Number) *string { return &n.SmsMethod }},
		{"SmsFallbackMethod", func(n *Number) *string { return &n.SmsFallbackMethod }},
	}
)

// updateNumber answers POST .../IncomingPhoneNumbers/{PN}.json. It validates
// every parameter first and applies all of them or none.
func (s *Server) updateNumber(req Request) response {
	form := req.Form
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.owned(req.AccountSID, req.NumberSID)
	if !ok {
		return notFound(req.Path)
	}
	next := *n
	if resp, ok := applyRoutingForm(form, &next); !ok {
		return resp
	}

	if owner, present := param(form, "AccountSid"); present && owner != "" && owner != next.AccountSID {
		if _, known := s.accounts[owner]; !known {
			return badRequest("AccountSid " + owner + " is not a known account")
		}
		next.AccountSID = owner // transfers the number
	}

	if next != *n {
		next.DateUpdated = later(n.DateUpdated)
		*n = next
	}
	return jsonResponse(http.StatusOK, toNumberResource(next))
}

// applyRoutingForm validates the routing and FriendlyName parameters of an
// update or create form and applies them to n. On an invalid parameter it
// returns the error answer and false; n may then be partly changed, so apply
// it to a copy.
func applyRoutingForm(form url.Values, n *Number) (response, bool) {
	for _, p := range urlParams {
		v, present := param(form, p.name)
		if !present {
			continue
		}
		if v != "" && !validURL(v) {
			return errorResponse(http.StatusBadRequest, codeInvalidURL, "Invalid url: "+p.name+" "+strconv.Quote(v)), false
		}
		if p.field != nil {
			*p.field(n) = v
		}
	}
	for _, p := range methodParams {
		v, present := param(form, p.name)
		if !present {
			continue
		}
		m := strings.ToUpper(v)
		if m != "" && m != http.MethodGet && m != http.MethodPost {
			return badRequest(p.name + " must be GET or POST"), false
		}
		if p.field != nil {
			*p.field(n) = orPOST(m)
		}
	}

	if smsApp, present := param(form, "SmsApplicationSid"); present {
		if smsApp != "" && !strings.HasPrefix(smsApp, "AP") {
			return badRequest("SmsApplicationSid must start with AP"), false
		}
		n.SmsApplicationSID = smsApp
	}

	app, hasApp := param(form, "VoiceApplicationSid")
	trunk, hasTrunk := param(form, "TrunkSid")
	switch {
	case app != "" && trunk != "":
		return badRequest("VoiceApplicationSid and TrunkSid cannot both be set"), false
	case app != "" && !strings.HasPrefix(app, "AP"):
		return badRequest("VoiceApplicationSid must start with AP"), false
	case trunk != "" && !strings.HasPrefix(trunk, "TK"):
		return badRequest("TrunkSid must start with TK"), false
	}
	if hasApp {
		n.VoiceApplicationSID = app
		if app != "" {
			n.TrunkSID = ""
		}
	}
	if hasTrunk {
		n.TrunkSID = trunk
		if trunk != "" {
			n.VoiceApplicationSID = ""
		}
	}

	if name, present := param(form, "FriendlyName"); present {
		if len([]rune(name)) > 64 {
			return errorResponse(http.StatusBadRequest, 20002, "FriendlyName must be at most 64 characters"), false
		}
		if name == "" {
			name = formatPhone(n.PhoneNumber)
		}
		n.FriendlyName = name
	}
	return response{}, true
}

// listNumbers answers GET .../IncomingPhoneNumbers.json.
func (s *Server) listNumbers(req Request) response {
	q := req.Query
	size, err := intParam(q, "PageSize", 50, 1, 1000)
	if err != nil {
		return badRequest(err.Error())
	}
	page, err := intParam(q, "Page", 0, 0, 1<<30)
	if err != nil {
		return badRequest(err.Error())
	}
	token := q.Get("PageToken")
	if page > 0 && token == "" {
		return badRequest("Paged requests must include a PageToken")
	}
	phone, hasPhone := param(q, "PhoneNumber")
	friendly, hasFriendly := param(q, "FriendlyName")
	origin, hasOrigin := param(q, "Origin")

	s.mu.Lock()
	var matched []Number
	var seqs []uint64
	for _, sid := range s.order {
		n := s.numbers[sid]
		if n.AccountSID != req.AccountSID ||
			(hasPhone && !matchPhone(phone, n.PhoneNumber)) ||
			(hasFriendly && n.FriendlyName != friendly) ||
			(hasOrigin && origin != "twilio") {
			continue
		}
		matched = append(matched, *n)
		seqs = append(seqs, s.seq[sid])
	}
	from, to := 0, min(size, len(matched))
	if token != "" {
		tokenSeq, ok := s.seq[token[min(2, len(token)):]]
		switch {
		case !ok:
			s.mu.Unlock()
			return badRequest("Invalid PageToken")
		case strings.HasPrefix(token, "PA"):
			from, _ = slices.BinarySearch(seqs, tokenSeq+1)
			to = min(from+size, len(matched))
		case strings.HasPrefix(token, "PB"):
			to, _ = slices.BinarySearch(seqs, tokenSeq)
			from = max(0, to-size)
		default:
			s.mu.Unlock()
			return badRequest("Invalid PageToken")
		}
	}
	s.mu.Unlock()

	items := make([]numberResource, 0, to-from)
	for _, n := range matched[from:to] {
		items = append(items, toNumberResource(n))
	}
	base := apiPrefix + req.AccountSID + "/IncomingPhoneNumbers.json"
	out := listResponse{
		FirstPageURI:         pageURI(base, q, size, 0, ""),
		IncomingPhoneNumbers: items,
		Page:                 page,
		PageSize:             size,
		Start:                page * size,
		End:                  page*size + max(0, len(items)-1),
		URI:                  pageURI(base, q, size, page, token),
	}
	if to < len(matched) && len(items) > 0 {
		next := pageURI(base, q, size, page+1, "PA"+matched[to-1].SID)
		out.NextPageURI = &next
	}
	if page > 0 && len(items) > 0 {
		prev := pageURI(base, q, size, page-1, "PB"+matched[from].SID)
		out.PreviousPageURI = &prev
	}
	return jsonResponse(http.StatusOK, out)
}

// pageURI builds a relative page URI that keeps the list filters, in the
// parameter order of Twilio's examples.
func pageURI(base string, q url.Values, size, page int, token string) string {
	var b strings.Builder
	b.WriteString(base + "?")
	for _, name := range []string{"FriendlyName", "Beta", "PhoneNumber", "Origin"} {
		if v, ok := param(q, name); ok {
			b.WriteString(name + "=" + url.QueryEscape(v) + "&")
		}
	}
	fmt.Fprintf(&b, "PageSize=%d&Page=%d", size, page)
	if token != "" {
		b.WriteString("&PageToken=" + url.QueryEscape(token))
	}
	return b.String()
}

// matchPhone reports whether pattern occurs in number, '*' matching any one
// digit.
func matchPhone(pattern, number string) bool {
	for i := 0; i+len(pattern) <= len(number); i++ {
		if matchAt(pattern, number[i:]) {
			return true
		}
	}
	return false
}

func matchAt(pattern, s string) bool {
	for j := 0; j < len(pattern); j++ {
		c := s[j]
		if pattern[j] == '*' {
			if c < '0' || c > '9' {
				return false
			}
		} else if pattern[j] != c {
			return false
		}
	}
	return true
}

// param returns the first value of a parameter and whether it was sent.
func param(v url.Values, name string) (string, bool) {
	vs, ok := v[name]
	if !ok || len(vs) == 0 {
		return "", false
	}
	return vs[0], true
}

// intParam parses an optional integer parameter within [lo, hi].
func intParam(q url.Values, name string, def, lo, hi int) (int, error) {
	v, ok := param(q, name)
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("%s must be an integer between %d and %d", name, lo, hi)
	}
	return n, nil
}

// validURL reports whether v is an absolute http(s) URL with a host.
func validURL(v string) bool {
	u, err := url.Parse(v)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// formatPhone is Twilio's default friendly name: "(415) 555-0100" for a +1
// number, the number itself otherwise.
func formatPhone(e164 string) string {
	if len(e164) == 12 && strings.HasPrefix(e164, "+1") && allDigits(e164[1:]) {
		return "(" + e164[2:5] + ") " + e164[5:8] + "-" + e164[8:]
	}
	return e164
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func orPOST(method string) string {
	if method == "" {
		return http.MethodPost
	}
	return method
}

// later returns now, or a moment after prev when the clock has not moved on,
// so that DateUpdated strictly advances.
func later(prev time.Time) time.Time {
	now := time.Now()
	if !now.After(prev) {
		return prev.Add(time.Nanosecond)
	}
	return now
}
