package twilio

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	openapi "github.com/twilio/twilio-go/rest/api/v2010"
)

// NumberType is the kind of number searched for: an AvailablePhoneNumbers
// subresource.
type NumberType string

// The number types searched: Twilio's Local, Mobile and TollFree subresources.
const (
	NumberTypeLocal    NumberType = "Local"
	NumberTypeMobile   NumberType = "Mobile"
	NumberTypeTollFree NumberType = "TollFree"
)

// AvailableQuery says which numbers on sale to list. Empty fields do not
// filter.
type AvailableQuery struct {
	// Country is the ISO 3166-1 alpha-2 code, e.g. "US"; required.
	Country string
	// Type defaults to NumberTypeLocal.
	Type NumberType
	// AreaCode, e.g. "415", applies to US and Canadian numbers only.
	AreaCode string
	// Contains is Twilio's pattern: digits, letters (keypad digits) and '*'
	// for any one digit, 2 to 16 characters.
	Contains     string
	InRegion     string
	InLocality   string
	InPostalCode string
	// SmsEnabled and VoiceEnabled, when set, require (true) or exclude
	// (false) the capability.
	SmsEnabled, VoiceEnabled *bool
	// Limit caps the answer (0: Twilio's default page). Twilio answers a
	// search with one page of at most a few dozen numbers whatever the limit.
	Limit int
}

// Capabilities says what a number can receive.
type Capabilities struct {
	Voice, SMS, MMS, Fax bool
}

// AvailableNumber is a number on sale, as Twilio describes it in a search.
type AvailableNumber struct {
	PhoneNumber  string // E.164
	FriendlyName string
	Locality     string
	Region       string
	PostalCode   string
	Country      string // ISO 3166-1 alpha-2
	// AddressRequirements is none, any, local or foreign: whether buying
	// the number needs an Address registered with Twilio.
	AddressRequirements string
	Beta                bool
	Capabilities        Capabilities
}

// AvailableNumbers implements Client with one search request.
func (r *REST) AvailableNumbers(ctx context.Context, q AvailableQuery) ([]AvailableNumber, error) {
	if q.Type == "" {
		q.Type = NumberTypeLocal
	}
	if err := q.validate(); err != nil {
		return nil, err
	}
	var out []AvailableNumber
	op := fmt.Sprintf("search %s %s numbers on sale", q.Country, q.Type)
	err := r.do(ctx, "ListAvailableNumbers", op, func(api *openapi.ApiService) error {
		res, err := r.search(api, q)
		if err != nil {
			return err
		}
		out = make([]AvailableNumber, 0, len(res))
		for i := range res {
			out = append(out, availableFrom(&res[i]))
		}
		return nil
	})
	return out, err
}

func (q AvailableQuery) validate() error {
	if len(q.Country) != 2 {
		return fmt.Errorf("country %q: want a two-letter ISO 3166-1 code such as US", q.Country)
	}
	switch q.Type {
	case NumberTypeLocal, NumberTypeMobile, NumberTypeTollFree:
	default:
		return fmt.Errorf("number type %q: want Local, Mobile or TollFree", q.Type)
	}
	if q.AreaCode != "" {
		if _, err := strconv.Atoi(q.AreaCode); err != nil || len(q.AreaCode) != 3 {
			return fmt.Errorf("area code %q: want three digits", q.AreaCode)
		}
	}
	if q.Limit < 0 {
		return fmt.Errorf("limit %d: want 0 (Twilio's default) or more", q.Limit)
	}
	return nil
}

// search sends the search to the subresource of q.Type. The three answer
// types are the same struct in twilio-go, so Mobile and TollFree convert
// to Local.
func (r *REST) search(api *openapi.ApiService, q AvailableQuery) ([]openapi.ApiV2010AvailablePhoneNumberLocal, error) {
	switch q.Type {
	case NumberTypeMobile:
		res, err := api.ListAvailablePhoneNumberMobile(q.Country, searchParams(&openapi.ListAvailablePhoneNumberMobileParams{}, r.cfg.AccountSID, q))
		return convertAll(res, func(n openapi.ApiV2010AvailablePhoneNumberMobile) openapi.ApiV2010AvailablePhoneNumberLocal {
			return openapi.ApiV2010AvailablePhoneNumberLocal(n)
		}), err
	case NumberTypeTollFree:
		res, err := api.ListAvailablePhoneNumberTollFree(q.Country, searchParams(&openapi.ListAvailablePhoneNumberTollFreeParams{}, r.cfg.AccountSID, q))
		return convertAll(res, func(n openapi.ApiV2010AvailablePhoneNumberTollFree) openapi.ApiV2010AvailablePhoneNumberLocal {
			return openapi.ApiV2010AvailablePhoneNumberLocal(n)
		}), err
	default:
		return api.ListAvailablePhoneNumberLocal(q.Country, searchParams(&openapi.ListAvailablePhoneNumberLocalParams{}, r.cfg.AccountSID, q))
	}
}

func convertAll[T, U any](in []T, f func(T) U) []U {
	out := make([]U, 0, len(in))
	for _, v := range in {
		out = append(out, f(v))
	}
	return out
}

// availableParams are the setters the three search parameter types share.
type availableParams[T any] interface {
	*T
	SetPathAccountSid(string) *T
	SetAreaCode(int) *T
	SetContains(string) *T
	SetInRegion(string) *T
	SetInLocality(string) *T
	SetInPostalCode(string) *T
	SetSmsEnabled(bool) *T
	SetVoiceEnabled(bool) *T
	SetLimit(int) *T
}

// searchParams fills p from q; the account is in the path.
func searchParams[T any, P availableParams[T]](p P, accountSID string, q AvailableQuery) P {
	p.SetPathAccountSid(accountSID)
	if q.AreaCode != "" {
		code, _ := strconv.Atoi(q.AreaCode) // validated
		p.SetAreaCode(code)
	}
	for _, f := range []struct {
		v   string
		set func(string) *T
	}{{q.Contains, p.SetContains}, {q.InRegion, p.SetInRegion}, {q.InLocality, p.SetInLocality}, {q.InPostalCode, p.SetInPostalCode}} {
		if f.v != "" {
			f.set(f.v)
		}
	}
	if q.SmsEnabled != nil {
		p.SetSmsEnabled(*q.SmsEnabled)
	}
	if q.VoiceEnabled != nil {
		p.SetVoiceEnabled(*q.VoiceEnabled)
	}
	if q.Limit > 0 {
		p.SetLimit(q.Limit) // also the page size: one request
	}
	return p
}

func availableFrom(n *openapi.ApiV2010AvailablePhoneNumberLocal) AvailableNumber {
	a := AvailableNumber{
		PhoneNumber:         str(n.PhoneNumber),
		FriendlyName:        str(n.FriendlyName),
		Locality:            str(n.Locality),
		Region:              str(n.Region),
		PostalCode:          str(n.PostalCode),
		Country:             str(n.IsoCountry),
		AddressRequirements: str(n.AddressRequirements),
	}
	if n.Beta != nil {
		a.Beta = *n.Beta
	}
	if c := n.Capabilities; c != nil {
		a.Capabilities = Capabilities{Voice: c.Voice, SMS: c.Sms, MMS: c.Mms, Fax: c.Fax}
	}
	return a
}

// BuyNumber implements Client: one create request that buys e164 with the
// non-nil fields of u and friendlyName (when not empty) already set, so the
// number never exists unrouted.
//
// A purchase spends money and cannot be undone for free, so it is never
// repeated blindly: the only retry is the one do makes after a 429, which
// Twilio answers before processing the request (nothing was bought). A 5xx,
// a reset connection or a timeout may have bought the number, so it is
// returned to the caller, which must look the number up in the account
// (FindNumber) before buying again. Go's HTTP transport does not resend a
// POST either, unless nothing of it was written.
func (r *REST) BuyNumber(ctx context.Context, e164, friendlyName string, u RoutingUpdate) (Number, error) {
	if e164 == "" {
		return Number{}, errors.New("buy a number: no phone number given")
	}
	var n Number
	err := r.do(ctx, "BuyNumber", "buy phone number "+e164, func(api *openapi.ApiService) error {
		res, err := api.CreateIncomingPhoneNumber(createParams(r.cfg.AccountSID, e164, friendlyName, u))
		if err != nil {
			return err
		}
		n = numberFrom(res)
		return nil
	})
	return n, err
}

// createParams sets the path account, the number and the routing. There is
// no body AccountSid: the account is the path's.
func createParams(accountSID, e164, friendlyName string, u RoutingUpdate) *openapi.CreateIncomingPhoneNumberParams {
	p := &openapi.CreateIncomingPhoneNumberParams{}
	p.SetPathAccountSid(accountSID)
	p.SetPhoneNumber(e164)
	if friendlyName != "" {
		p.SetFriendlyName(friendlyName)
	}
	applyRouting(p, u)
	return p
}

// ReleaseNumber implements Client: one DELETE, after which the number is
// no longer the account's. A number already gone answers 404 (IsNotFound).
func (r *REST) ReleaseNumber(ctx context.Context, sid string) error {
	return r.do(ctx, "ReleaseNumber", "release IncomingPhoneNumber "+sid, func(api *openapi.ApiService) error {
		p := &openapi.DeleteIncomingPhoneNumberParams{}
		p.SetPathAccountSid(r.cfg.AccountSID)
		return api.DeleteIncomingPhoneNumber(sid, p)
	})
}
