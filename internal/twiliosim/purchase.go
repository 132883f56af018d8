package twiliosim

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
)

// Number types of the AvailablePhoneNumbers subresources the emulator serves.
const (
	NumberTypeLocal    = "Local"
	NumberTypeMobile   = "Mobile"
	NumberTypeTollFree = "TollFree"
)

// Twilio error codes of purchases (https://www.twilio.com/docs/errors/<code>).
const (
	// codeNumberInvalid: "Phone Number is invalid" (confirmed on Twilio's
	// error page: purchasing a number that is not valid E.164).
	codeNumberInvalid = 21421
	// codeNumberUnavailable: "PhoneNumber is not available" (confirmed:
	// Twilio does not own the number, or it is reserved for another account).
	codeNumberUnavailable = 21422
	// codeInvalidAreaCode: "Invalid area code" (confirmed).
	codeInvalidAreaCode = 21451
	// codeNoNumbersInAreaCode: "No phone numbers found in area code". The
	// code could not be confirmed in Twilio's documentation; it is the one
	// that follows 21451 in Twilio's numbering of purchase errors.
	codeNoNumbersInAreaCode = 21452
)

// Capabilities says what a number can receive.
type Capabilities struct {
	Voice, SMS, MMS, Fax bool
}

// AvailableNumber is a number Twilio offers for purchase. Buying it (POST
// IncomingPhoneNumbers.json) moves it out of the inventory and into the
// buying account; releasing it later does not put it back, as a released
// Twilio number goes into quarantine rather than straight back on sale.
type AvailableNumber struct {
	// PhoneNumber is the E.164 number; required.
	PhoneNumber string
	// Country is the ISO 3166-1 alpha-2 code; default "US".
	Country string
	// Type is NumberTypeLocal (default), NumberTypeMobile or NumberTypeTollFree.
	Type string
	// FriendlyName defaults to the formatted number, "(415) 555-0100".
	FriendlyName string
	Locality     string
	Region       string // two-letter state or province
	PostalCode   string
	RateCenter   string
	LATA         string
	Latitude     float64
	Longitude    float64
	// AddressRequirements is "none" (default), "any", "local" or "foreign".
	AddressRequirements string
	Beta                bool
	// Capabilities nil means voice, SMS and MMS (no fax).
	Capabilities *Capabilities
}

// availableStore is the inventory of purchasable numbers. Its fields other
// than buy are guarded by Server.mu.
type availableStore struct {
	// buy serialises changes to the inventory (AddAvailable, purchases), so
	// that a number is bought at most once; it is taken before Server.mu.
	buy       sync.Mutex
	order     []string                   // E.164 in the order added
	byPhone   map[string]AvailableNumber // current inventory
	countries map[string]bool            // every country ever stocked
}

// defaultCountries answer an AvailablePhoneNumbers search (possibly with
// no results) even when nothing of theirs was ever stocked; any other
// country is unknown until AddAvailable stocks a number of it.
var defaultCountries = map[string]bool{"US": true, "CA": true, "GB": true}

// AddAvailable stocks a number for purchase, fills in the defaults
// documented on AvailableNumber and returns it as stored. It panics when
// the number is not E.164, its type or country is invalid, or it is
// already stocked or owned by an account: that is a broken test setup.
func (s *Server) AddAvailable(n AvailableNumber) AvailableNumber {
	n = withAvailableDefaults(n)
	if msg := invalidAvailable(n); msg != "" {
		panic("twiliosim: AddAvailable " + n.PhoneNumber + ": " + msg)
	}
	s.avail.buy.Lock()
	defer s.avail.buy.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.taken(n.PhoneNumber) {
		panic(fmt.Sprintf("twiliosim: AddAvailable %s: already stocked or owned", n.PhoneNumber))
	}
	s.stock(n)
	return n
}

// Available returns the numbers on sale, in the order they were stocked.
// Numbers that an account owns (bought, or added with AddNumber) are not
// on sale.
func (s *Server) Available() []AvailableNumber {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]AvailableNumber, 0, len(s.avail.order))
	for _, e164 := range s.avail.order {
		if _, owned := s.phones[e164]; !owned {
			out = append(out, s.avail.byPhone[e164])
		}
	}
	return out
}

// seedArea is one area a seeded number can come from.
type seedArea struct {
	prefix                                     string // E.164 up to the subscriber digits that vary
	locality, region, postal, rateCenter, lata string
	lat, long                                  float64
}

// seedAreas are the areas SeedAvailable draws from. The US and Canadian
// numbers start in the 555-01XX range reserved for fiction, the British
// ones in Ofcom's drama range 020 7946 0XXX.
var seedAreas = map[string][]seedArea{
	"US": {
		{"+1415555", "San Francisco", "CA", "94105", "SNFC CNTRL", "722", 37.7749, -122.4194},
		{"+1212555", "New York", "NY", "10001", "NWYRCYZN01", "132", 40.7128, -74.0060},
		{"+1312555", "Chicago", "IL", "60601", "CHICAGO", "358", 41.8781, -87.6298},
		{"+1206555", "Seattle", "WA", "98101", "SEATTLE", "674", 47.6062, -122.3321},
		{"+1512555", "Austin", "TX", "78701", "AUSTIN", "558", 30.2672, -97.7431},
	},
	"CA": {
		{"+1604555", "Vancouver", "BC", "V6B 1A1", "VANCOUVER", "888", 49.2827, -123.1207},
		{"+1416555", "Toronto", "ON", "M5H 2N2", "TORONTO", "888", 43.6532, -79.3832},
	},
	"GB": {
		{"+4420794", "London", "", "", "", "", 51.5074, -0.1278},
	},
}

// SeedAvailable stocks n Local numbers of country ("US", "CA" or "GB"),
// spread over a few cities with their locality, region, postal code and
// coordinates, all able to receive voice, SMS and MMS. Numbers already
// stocked or owned by an account are skipped, so seeding never collides
// with a test's numbers. It returns the numbers stocked and panics for
// another country. Tests and demos call it; New stocks nothing.
func (s *Server) SeedAvailable(country string, n int) []AvailableNumber {
	areas, ok := seedAreas[country]
	if !ok {
		panic("twiliosim: SeedAvailable: no seed numbers for country " + country)
	}
	s.avail.buy.Lock()
	defer s.avail.buy.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]AvailableNumber, 0, max(n, 0))
	// The subscriber part counts up from 0100 in every area in turn: the
	// first 500 US numbers stay in the fictional 555-0100…0199.
	for i := 0; len(out) < n; i++ {
		line := 100 + i/len(areas)
		if line > 9999 {
			panic(fmt.Sprintf("twiliosim: SeedAvailable: cannot find %d free %s numbers", n, country))
		}
		a := areas[i%len(areas)]
		e164 := fmt.Sprintf("%s%04d", a.prefix, line)
		if country == "GB" {
			e164 = fmt.Sprintf("%s%05d", a.prefix, 60000+line) // 020 7946 0XXX
		}
		if s.taken(e164) {
			continue
		}
		num := withAvailableDefaults(AvailableNumber{
			PhoneNumber: e164, Country: country, Locality: a.locality, Region: a.region, PostalCode: a.postal,
			RateCenter: a.rateCenter, LATA: a.lata, Latitude: a.lat, Longitude: a.long,
		})
		s.stock(num)
		out = append(out, num)
	}
	return out
}

func withAvailableDefaults(n AvailableNumber) AvailableNumber {
	if n.Country == "" {
		n.Country = "US"
	}
	if n.Type == "" {
		n.Type = NumberTypeLocal
	}
	if n.FriendlyName == "" {
		n.FriendlyName = formatPhone(n.PhoneNumber)
	}
	if n.AddressRequirements == "" {
		n.AddressRequirements = "none"
	}
	if n.Capabilities == nil {
		n.Capabilities = &Capabilities{Voice: true, SMS: true, MMS: true}
	} else {
		c := *n.Capabilities // the caller's struct stays theirs
		n.Capabilities = &c
	}
	return n
}

// invalidAvailable says what is wrong with a stocked number, "" if nothing.
func invalidAvailable(n AvailableNumber) string {
	switch {
	case !validE164(n.PhoneNumber):
		return "phone number is not E.164"
	case !validCountry(n.Country):
		return "country must be two upper-case letters"
	case n.Type != NumberTypeLocal && n.Type != NumberTypeMobile && n.Type != NumberTypeTollFree:
		return "type must be Local, Mobile or TollFree"
	}
	switch n.AddressRequirements {
	case "none", "any", "local", "foreign":
		return ""
	}
	return "address requirements must be none, any, local or foreign"
}

// taken reports whether e164 is stocked or owned. The caller holds s.mu.
func (s *Server) taken(e164 string) bool {
	_, owned := s.phones[e164]
	_, stocked := s.avail.byPhone[e164]
	return owned || stocked
}

// stock adds n to the inventory. The caller holds s.avail.buy and s.mu.
func (s *Server) stock(n AvailableNumber) {
	if s.avail.byPhone == nil {
		s.avail.byPhone = map[string]AvailableNumber{}
		s.avail.countries = map[string]bool{}
	}
	s.avail.byPhone[n.PhoneNumber] = n
	s.avail.order = append(s.avail.order, n.PhoneNumber)
	s.avail.countries[n.Country] = true
}

// unstock removes e164 from the inventory. The caller holds s.avail.buy and s.mu.
func (s *Server) unstock(e164 string) {
	delete(s.avail.byPhone, e164)
	for i, p := range s.avail.order {
		if p == e164 {
			s.avail.order = append(s.avail.order[:i], s.avail.order[i+1:]...)
			break
		}
	}
}

// createNumber answers POST .../IncomingPhoneNumbers.json: it buys the
// PhoneNumber asked for, or the first number on sale in AreaCode, with the
// routing and FriendlyName of the same form already applied.
func (s *Server) createNumber(req Request) response {
	form := req.Form
	phone, _ := param(form, "PhoneNumber")
	area, _ := param(form, "AreaCode")
	switch {
	case phone != "" && !validE164(phone):
		return errorResponse(http.StatusBadRequest, codeNumberInvalid, "Phone Number is invalid: "+phone)
	case phone == "" && area == "":
		// Twilio requires one of the two; the code of its answer is not
		// documented, so the emulator's generic bad-request code is used.
		return badRequest("A PhoneNumber or an AreaCode is required")
	case phone == "" && !isAreaCode(area):
		return errorResponse(http.StatusBadRequest, codeInvalidAreaCode, "Invalid area code: "+area)
	}

	s.avail.buy.Lock()
	defer s.avail.buy.Unlock()
	s.mu.Lock()
	e164, ok := s.pickForSale(phone, area)
	s.mu.Unlock()
	switch {
	case !ok && phone != "":
		return errorResponse(http.StatusBadRequest, codeNumberUnavailable, "PhoneNumber "+phone+" is not available")
	case !ok:
		return errorResponse(http.StatusBadRequest, codeNoNumbersInAreaCode, "No phone numbers found in area code "+area)
	}
	bought := Number{AccountSID: req.AccountSID, PhoneNumber: e164}
	if resp, ok := applyRoutingForm(form, &bought); !ok {
		return resp // nothing is bought when a parameter is invalid
	}
	s.mu.Lock()
	s.unstock(e164)
	s.mu.Unlock()
	// AddNumber fills in the defaults (methods, friendly name, dates) and
	// makes the number visible to list, fetch, update and delete.
	return jsonResponse(http.StatusCreated, toNumberResource(s.AddNumber(bought)))
}

// pickForSale returns phone if it is on sale, else (phone empty) the first
// number on sale in the +1 area code area. The caller holds s.mu.
func (s *Server) pickForSale(phone, area string) (string, bool) {
	if phone != "" {
		_, stocked := s.avail.byPhone[phone]
		_, owned := s.phones[phone]
		return phone, stocked && !owned
	}
	for _, e164 := range s.avail.order {
		if _, owned := s.phones[e164]; !owned && strings.HasPrefix(e164, "+1"+area) {
			return e164, true
		}
	}
	return "", false
}

// validE164 reports whether s is a plus sign and 2 to 15 digits, the first not 0.
func validE164(s string) bool {
	digits, ok := strings.CutPrefix(s, "+")
	return ok && len(digits) >= 2 && len(digits) <= 15 && digits[0] != '0' && allDigits(digits)
}

func validCountry(c string) bool {
	return len(c) == 2 && c[0] >= 'A' && c[0] <= 'Z' && c[1] >= 'A' && c[1] <= 'Z'
}

func isAreaCode(s string) bool { return len(s) == 3 && allDigits(s) }
