package twiliosim

import (
	"crypto/subtle"
	"net/http"
	"time"
)

// Account is an emulated Twilio account (or subaccount) and its credentials.
type Account struct {
	// SID is "AC" followed by 32 hex digits; AddAccount generates one when empty.
	SID string
	// AuthToken authenticates SID; AddAccount generates 32 hex digits when
	// empty. twilio-go only accepts [A-Za-z0-9] credentials.
	AuthToken string
	// FriendlyName defaults to "Emulated account".
	FriendlyName string
	// Type is "Full" (default) or "Trial".
	Type string
	// Status is "active" (default), "suspended" or "closed"; only active
	// accounts can authenticate.
	Status string
	// APIKeys maps API key SIDs ("SK…") to their secrets. An API key acts as
	// the account it belongs to.
	APIKeys map[string]string
	// OwnerAccountSID is the parent account of a subaccount, empty for a main
	// account. The parent's credentials may act on the subaccount's
	// resources; the reverse is refused.
	OwnerAccountSID string
}

type accountRecord struct {
	Account
	created time.Time
}

type apiKey struct {
	accountSID string
	secret     string
}

// AddAccount adds or replaces an account, fills in the defaults documented on
// Account and returns the account as stored.
func (s *Server) AddAccount(a Account) Account {
	if a.SID == "" {
		a.SID = newSID("AC")
	}
	if a.AuthToken == "" {
		a.AuthToken = randomHex(16)
	}
	if a.FriendlyName == "" {
		a.FriendlyName = "Emulated account"
	}
	if a.Type == "" {
		a.Type = "Full"
	}
	if a.Status == "" {
		a.Status = "active"
	}
	keys := make(map[string]string, len(a.APIKeys))
	for sid, secret := range a.APIKeys {
		keys[sid] = secret
	}
	a.APIKeys = keys

	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.accounts[a.SID]; ok {
		for sid := range old.APIKeys {
			delete(s.apiKeys, sid)
		}
	} else {
		s.accountOrder = append(s.accountOrder, a.SID)
	}
	for sid, secret := range keys {
		s.apiKeys[sid] = apiKey{accountSID: a.SID, secret: secret}
	}
	s.accounts[a.SID] = &accountRecord{Account: a, created: time.Now()}
	return a
}

// authenticate returns the SID of the account that the Basic credentials
// belong to. The caller holds s.mu.
func (s *Server) authenticate(user, pass string) (string, bool) {
	if user == "" || pass == "" {
		return "", false
	}
	accountSID, secret := user, ""
	if a, ok := s.accounts[user]; ok {
		secret = a.AuthToken
	} else if k, ok := s.apiKeys[user]; ok {
		accountSID, secret = k.accountSID, k.secret
	} else {
		return "", false
	}
	if subtle.ConstantTimeCompare([]byte(secret), []byte(pass)) != 1 {
		return "", false
	}
	a, ok := s.accounts[accountSID]
	if !ok || a.Status != "active" {
		return "", false
	}
	return accountSID, true
}

// mayActOn reports whether credentials of account authSID may use the
// resources of account pathSID. The caller holds s.mu.
func (s *Server) mayActOn(authSID, pathSID string) bool {
	if authSID == pathSID {
		return true
	}
	a, ok := s.accounts[pathSID]
	return ok && a.OwnerAccountSID == authSID
}

// fetchAccount answers GET /2010-04-01/Accounts/{Sid}.json.
func (s *Server) fetchAccount(req Request) response {
	s.mu.Lock()
	a, ok := s.accounts[req.AccountSID]
	var rec accountRecord
	if ok {
		rec = *a
	}
	s.mu.Unlock()
	if !ok {
		return notFound(req.Path)
	}
	return jsonResponse(http.StatusOK, accountResource(rec))
}
