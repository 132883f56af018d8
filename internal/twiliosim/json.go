package twiliosim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Twilio error codes used by the emulator besides the ones spelled inline.
const (
	codeNotFound   = 20404
	codeBadRequest = 70002 // "Bad request": malformed or out-of-range parameters
	codeInvalidURL = 21502
)

// response is a rendered answer.
type response struct {
	status      int
	code        int // Twilio error code, 0 for success
	contentType string
	body        []byte
}

func (r response) write(w http.ResponseWriter) {
	if r.body == nil {
		w.WriteHeader(r.status)
		return
	}
	w.Header().Set("Content-Type", r.contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(r.body)))
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body)
}

func jsonResponse(status int, v any) response {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Errorf("twiliosim: encoding response: %w", err))
	}
	return response{status: status, contentType: "application/json", body: b}
}

func noContent() response { return response{status: http.StatusNoContent} }

// errorBody is Twilio's REST error document, which twilio-go decodes into
// *client.TwilioRestError.
type errorBody struct {
	Code     int    `json:"code"`
	Detail   string `json:"detail,omitempty"`
	Message  string `json:"message"`
	MoreInfo string `json:"more_info"`
	Status   int    `json:"status"`
}

func errorResponse(status, code int, message string) response {
	r := jsonResponse(status, errorBody{
		Code:     code,
		Message:  message,
		MoreInfo: "https://www.twilio.com/docs/errors/" + itoa(code),
		Status:   status,
	})
	r.code = code
	return r
}

func authError() response {
	r := jsonResponse(http.StatusUnauthorized, errorBody{
		Code:     20003,
		Detail:   "Your AccountSid or AuthToken was incorrect.",
		Message:  "Authenticate",
		MoreInfo: "https://www.twilio.com/docs/errors/20003",
		Status:   http.StatusUnauthorized,
	})
	r.code = 20003
	return r
}

func notFound(path string) response {
	return errorResponse(http.StatusNotFound, codeNotFound, "The requested resource "+path+" was not found")
}

func badRequest(message string) response {
	return errorResponse(http.StatusBadRequest, codeBadRequest, message)
}

// numberResource is the IncomingPhoneNumber JSON, field for field as in the
// OpenAPI examples (twilio-facts.md §1.5).
type numberResource struct {
	AccountSID             string       `json:"account_sid"`
	AddressRequirements    string       `json:"address_requirements"`
	AddressSID             *string      `json:"address_sid"`
	APIVersion             string       `json:"api_version"`
	Beta                   bool         `json:"beta"`
	Capabilities           capabilities `json:"capabilities"`
	DateCreated            string       `json:"date_created"`
	DateUpdated            string       `json:"date_updated"`
	EmergencyStatus        string       `json:"emergency_status"`
	EmergencyAddressSID    *string      `json:"emergency_address_sid"`
	EmergencyAddressStatus string       `json:"emergency_address_status"`
	FriendlyName           string       `json:"friendly_name"`
	IdentitySID            *string      `json:"identity_sid"`
	Origin                 string       `json:"origin"`
	PhoneNumber            string       `json:"phone_number"`
	SID                    string       `json:"sid"`
	SmsApplicationSID      string       `json:"sms_application_sid"`
	SmsFallbackMethod      string       `json:"sms_fallback_method"`
	SmsFallbackURL         string       `json:"sms_fallback_url"`
	SmsMethod              string       `json:"sms_method"`
	SmsURL                 string       `json:"sms_url"`
	StatusCallback         string       `json:"status_callback"`
	StatusCallbackMethod   string       `json:"status_callback_method"`
	TrunkSID               *string      `json:"trunk_sid"`
	URI                    string       `json:"uri"`
	VoiceApplicationSID    string       `json:"voice_application_sid"`
	VoiceCallerIDLookup    bool         `json:"voice_caller_id_lookup"`
	VoiceFallbackMethod    string       `json:"voice_fallback_method"`
	VoiceFallbackURL       *string      `json:"voice_fallback_url"`
	VoiceMethod            string       `json:"voice_method"`
	VoiceURL               *string      `json:"voice_url"`
	BundleSID              *string      `json:"bundle_sid"`
	VoiceReceiveMode       string       `json:"voice_receive_mode"`
	Status                 string       `json:"status"`
	Type                   string       `json:"type"`
}

type capabilities struct {
	Voice bool `json:"voice"`
	SMS   bool `json:"sms"`
	MMS   bool `json:"mms"`
	Fax   bool `json:"fax"`
}

func toNumberResource(n Number) numberResource {
	return numberResource{
		AccountSID:             n.AccountSID,
		AddressRequirements:    "none",
		APIVersion:             "2010-04-01",
		Capabilities:           capabilities{Voice: true, SMS: true, MMS: true},
		DateCreated:            formatDate(n.DateCreated),
		DateUpdated:            formatDate(n.DateUpdated),
		EmergencyStatus:        "Inactive",
		EmergencyAddressStatus: "unregistered",
		FriendlyName:           n.FriendlyName,
		Origin:                 "twilio",
		PhoneNumber:            n.PhoneNumber,
		SID:                    n.SID,
		SmsApplicationSID:      n.SmsApplicationSID,
		SmsFallbackMethod:      n.SmsFallbackMethod,
		SmsFallbackURL:         n.SmsFallbackURL,
		SmsMethod:              n.SmsMethod,
		SmsURL:                 n.SmsURL,
		StatusCallback:         n.StatusCallback,
		StatusCallbackMethod:   n.StatusCallbackMethod,
		TrunkSID:               nullable(n.TrunkSID),
		URI:                    numberURI(n.AccountSID, n.SID),
		VoiceApplicationSID:    n.VoiceApplicationSID,
		VoiceFallbackMethod:    n.VoiceFallbackMethod,
		VoiceFallbackURL:       nullable(n.VoiceFallbackURL),
		VoiceMethod:            n.VoiceMethod,
		VoiceURL:               nullable(n.VoiceURL),
		VoiceReceiveMode:       "voice",
		Status:                 "in-use",
		Type:                   "local",
	}
}

// listResponse is the IncomingPhoneNumbers list envelope.
type listResponse struct {
	End                  int              `json:"end"`
	FirstPageURI         string           `json:"first_page_uri"`
	IncomingPhoneNumbers []numberResource `json:"incoming_phone_numbers"`
	NextPageURI          *string          `json:"next_page_uri"`
	Page                 int              `json:"page"`
	PageSize             int              `json:"page_size"`
	PreviousPageURI      *string          `json:"previous_page_uri"`
	Start                int              `json:"start"`
	URI                  string           `json:"uri"`
}

// accountJSON is the Account JSON.
type accountJSON struct {
	AuthToken       string            `json:"auth_token"`
	DateCreated     string            `json:"date_created"`
	DateUpdated     string            `json:"date_updated"`
	FriendlyName    string            `json:"friendly_name"`
	OwnerAccountSID string            `json:"owner_account_sid"`
	SID             string            `json:"sid"`
	Status          string            `json:"status"`
	SubresourceURIs map[string]string `json:"subresource_uris"`
	Type            string            `json:"type"`
	URI             string            `json:"uri"`
}

func accountResource(a accountRecord) accountJSON {
	owner := a.OwnerAccountSID
	if owner == "" {
		owner = a.SID
	}
	base := apiPrefix + a.SID
	return accountJSON{
		AuthToken:       a.AuthToken,
		DateCreated:     formatDate(a.created),
		DateUpdated:     formatDate(a.created),
		FriendlyName:    a.FriendlyName,
		OwnerAccountSID: owner,
		SID:             a.SID,
		Status:          a.Status,
		SubresourceURIs: map[string]string{
			"incoming_phone_numbers": base + "/IncomingPhoneNumbers.json",
			"applications":           base + "/Applications.json",
			"calls":                  base + "/Calls.json",
			"recordings":             base + "/Recordings.json",
		},
		Type: a.Type,
		URI:  base + ".json",
	}
}

func numberURI(accountSID, numberSID string) string {
	return apiPrefix + accountSID + "/IncomingPhoneNumbers/" + numberSID + ".json"
}

// formatDate renders a time the way Twilio does (RFC 2822 in GMT), e.g.
// "Thu, 30 Jul 2015 23:19:04 +0000".
func formatDate(t time.Time) string { return t.UTC().Format(time.RFC1123Z) }

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func itoa(n int) string { return strconv.Itoa(n) }

// newSID returns prefix followed by 32 random hex digits.
func newSID(prefix string) string { return prefix + randomHex(16) }

func randomHex(nBytes int) string {
	b := make([]byte, nBytes)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
