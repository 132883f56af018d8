package twiliosim

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// maxAvailablePage is the most numbers one search answers. Twilio answers a
// search with a single page of a few dozen numbers however large PageSize
// is; its documentation gives no exact figure, so the emulator caps at the
// default page size.
const maxAvailablePage = 50

// availableTypes are the AvailablePhoneNumbers subresources emulated (the
// last element of their path); classify recognises them.
var availableTypes = map[string]bool{"Local.json": true, "Mobile.json": true, "TollFree.json": true}

// availableQuery is a parsed AvailablePhoneNumbers search.
type availableQuery struct {
	country, typ                                   string
	areaCode, contains                             string
	region, postal, locality, rateCenter, lata     string
	voice, sms, mms, fax                           *bool
	excludeAny, excludeLocal, excludeForeign, beta bool
	size                                           int
}

// boolParams are the search's true/false parameters and where they go.
var boolParams = []struct {
	name  string
	field func(*availableQuery) **bool
}{
	{"VoiceEnabled", func(q *availableQuery) **bool { return &q.voice }},
	{"SmsEnabled", func(q *availableQuery) **bool { return &q.sms }},
	{"MmsEnabled", func(q *availableQuery) **bool { return &q.mms }},
	{"FaxEnabled", func(q *availableQuery) **bool { return &q.fax }},
}

// listAvailable answers GET .../AvailablePhoneNumbers/{Country}/{Type}.json.
// NearNumber, NearLatLong and Distance are accepted and ignored.
func (s *Server) listAvailable(req Request) response {
	country, typ := availablePath(req.Path)
	s.mu.Lock()
	known := defaultCountries[country] || s.avail.countries[country]
	s.mu.Unlock()
	if !known {
		return notFound(req.Path)
	}
	aq, bad := parseAvailableQuery(req.Query)
	if bad != nil {
		return *bad
	}
	aq.country, aq.typ = country, typ

	s.mu.Lock()
	var found []AvailableNumber
	for _, e164 := range s.avail.order {
		n := s.avail.byPhone[e164]
		if _, owned := s.phones[e164]; !owned && aq.match(n) && len(found) < min(aq.size, maxAvailablePage) {
			found = append(found, n)
		}
	}
	s.mu.Unlock()

	items := make([]availableResource, 0, len(found))
	for _, n := range found {
		items = append(items, toAvailableResource(n))
	}
	uri := req.Path
	if len(req.Query) > 0 {
		uri += "?" + req.Query.Encode()
	}
	return jsonResponse(http.StatusOK, availableList{
		AvailablePhoneNumbers: items,
		End:                   max(0, len(items)-1),
		FirstPageURI:          uri,
		PageSize:              aq.size,
		URI:                   uri,
	})
}

// availablePath returns the country and type of a search path, which
// classify has already recognised.
func availablePath(path string) (country, typ string) {
	parts := strings.Split(strings.TrimPrefix(path, apiPrefix), "/")
	return parts[2], strings.TrimSuffix(parts[3], ".json")
}

// parseAvailableQuery reads the search parameters; an invalid one yields
// the 400 answer.
func parseAvailableQuery(q url.Values) (availableQuery, *response) {
	aq := availableQuery{beta: true}
	bad := func(msg string) (availableQuery, *response) {
		r := badRequest(msg)
		return availableQuery{}, &r
	}
	var err error
	if aq.size, err = intParam(q, "PageSize", 50, 1, 1000); err != nil {
		return bad(err.Error())
	}
	aq.areaCode = q.Get("AreaCode")
	if aq.areaCode != "" && !allDigits(aq.areaCode) {
		return bad("AreaCode must be digits")
	}
	if aq.contains, err = containsPattern(q.Get("Contains")); err != nil {
		return bad(err.Error())
	}
	aq.region, aq.postal, aq.locality = q.Get("InRegion"), q.Get("InPostalCode"), q.Get("InLocality")
	aq.rateCenter, aq.lata = q.Get("InRateCenter"), q.Get("InLata")
	for _, p := range boolParams {
		if v, ok := param(q, p.name); ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return bad(p.name + " must be true or false")
			}
			*p.field(&aq) = &b
		}
	}
	for name, field := range map[string]*bool{
		"ExcludeAllAddressRequired": &aq.excludeAny, "ExcludeLocalAddressRequired": &aq.excludeLocal,
		"ExcludeForeignAddressRequired": &aq.excludeForeign, "Beta": &aq.beta,
	} {
		if v, ok := param(q, name); ok {
			if *field, err = strconv.ParseBool(v); err != nil {
				return bad(name + " must be true or false")
			}
		}
	}
	return aq, nil
}

// containsPattern turns a Contains value into a matchPhone pattern: letters
// become their keypad digits ("STORM" is 78676) and '*' matches any one
// digit. A leading '+' anchors the pattern at the start of the number. It is
// 2 to 16 characters long, as Twilio documents.
func containsPattern(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	if len(v) < 2 || len(v) > 16 {
		return "", errString("Contains must be 2 to 16 characters")
	}
	b := []byte(strings.ToUpper(v))
	for i, c := range b {
		switch {
		case c >= 'A' && c <= 'Z':
			b[i] = keypad[c-'A']
		case c >= '0' && c <= '9', c == '*', c == '+' && i == 0:
		default:
			return "", errString("Contains may hold digits, letters, '*' and a leading '+'")
		}
	}
	return string(b), nil
}

// keypad maps A…Z to the digit of a phone keypad.
const keypad = "22233344455566677778889999"

type errString string

func (e errString) Error() string { return string(e) }

// match reports whether n is of the searched country and type and passes
// every filter.
func (aq availableQuery) match(n AvailableNumber) bool {
	c := n.Capabilities
	switch {
	case n.Country != aq.country || n.Type != aq.typ:
		return false
	case aq.areaCode != "" && !strings.HasPrefix(n.PhoneNumber, "+1"+aq.areaCode):
		return false // AreaCode applies to US and Canadian numbers only
	case aq.contains != "" && !matchPhone(aq.contains, n.PhoneNumber):
		return false
	case !sameOrUnset(aq.region, n.Region) || !sameOrUnset(aq.locality, n.Locality) ||
		!sameOrUnset(aq.rateCenter, n.RateCenter):
		return false
	case aq.postal != "" && aq.postal != n.PostalCode, aq.lata != "" && aq.lata != n.LATA:
		return false
	case !wants(aq.voice, c.Voice) || !wants(aq.sms, c.SMS) || !wants(aq.mms, c.MMS) || !wants(aq.fax, c.Fax):
		return false
	case aq.excludeAny && n.AddressRequirements != "none",
		aq.excludeLocal && n.AddressRequirements == "local",
		aq.excludeForeign && n.AddressRequirements == "foreign":
		return false
	}
	return aq.beta || !n.Beta
}

// sameOrUnset: an unset filter matches; a set one matches case-insensitively.
func sameOrUnset(filter, v string) bool { return filter == "" || strings.EqualFold(filter, v) }

// wants: an unset capability filter matches; a set one must equal has.
func wants(filter *bool, has bool) bool { return filter == nil || *filter == has }

// availableList is the AvailablePhoneNumbers search envelope: one page,
// never a next one.
type availableList struct {
	AvailablePhoneNumbers []availableResource `json:"available_phone_numbers"`
	End                   int                 `json:"end"`
	FirstPageURI          string              `json:"first_page_uri"`
	NextPageURI           *string             `json:"next_page_uri"`
	Page                  int                 `json:"page"`
	PageSize              int                 `json:"page_size"`
	PreviousPageURI       *string             `json:"previous_page_uri"`
	Start                 int                 `json:"start"`
	URI                   string              `json:"uri"`
}

// availableResource is one AvailablePhoneNumber, field for field as
// twilio-go's ApiV2010AvailablePhoneNumberLocal decodes it. Twilio sends
// latitude and longitude as decimal strings; twilio-go accepts both.
type availableResource struct {
	FriendlyName        string                `json:"friendly_name"`
	PhoneNumber         string                `json:"phone_number"`
	LATA                *string               `json:"lata"`
	Locality            *string               `json:"locality"`
	RateCenter          *string               `json:"rate_center"`
	Latitude            *string               `json:"latitude"`
	Longitude           *string               `json:"longitude"`
	Region              *string               `json:"region"`
	PostalCode          *string               `json:"postal_code"`
	IsoCountry          string                `json:"iso_country"`
	AddressRequirements string                `json:"address_requirements"`
	Beta                bool                  `json:"beta"`
	Capabilities        availableCapabilities `json:"capabilities"`
}

// availableCapabilities spells the keys as Twilio's search answers do.
type availableCapabilities struct {
	Voice bool `json:"voice"`
	SMS   bool `json:"SMS"`
	MMS   bool `json:"MMS"`
	Fax   bool `json:"fax"`
}

func toAvailableResource(n AvailableNumber) availableResource {
	r := availableResource{
		FriendlyName:        n.FriendlyName,
		PhoneNumber:         n.PhoneNumber,
		LATA:                nullable(n.LATA),
		Locality:            nullable(n.Locality),
		RateCenter:          nullable(n.RateCenter),
		Region:              nullable(n.Region),
		PostalCode:          nullable(n.PostalCode),
		IsoCountry:          n.Country,
		AddressRequirements: n.AddressRequirements,
		Beta:                n.Beta,
		Capabilities:        availableCapabilities(*n.Capabilities),
	}
	if n.Latitude != 0 || n.Longitude != 0 {
		r.Latitude = nullable(strconv.FormatFloat(n.Latitude, 'f', 6, 64))
		r.Longitude = nullable(strconv.FormatFloat(n.Longitude, 'f', 6, 64))
	}
	return r
}
