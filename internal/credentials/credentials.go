// Package credentials is the format in which the manager publishes, for the
// webhook server, the auth tokens of the TwilioAccounts it verified: one
// Secret in the operator's namespace, so that the internet-facing webhook
// server reads that Secret only and never trusts a token the operator did not
// verify against Twilio.
package credentials

import (
	"encoding/json"
	"fmt"
)

// Key is the key of the published accounts in the Secret.
const Key = "accounts.json"

// Account is one TwilioAccount whose auth token the webhook server may use to
// check signatures: the operator verified it against Twilio and it owns its
// account SID in the cluster.
type Account struct {
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	AccountSID string `json:"accountSid"`
	AuthToken  string `json:"authToken"`
	// EventSinkURL is the account's default event sink (spec.events.sink.url).
	EventSinkURL string `json:"eventSinkURL,omitempty"`
}

// AgentHeaders are the headers a Secret labelled for it gives the handshake
// to the agents of the numbers that name it (spec.agent.headersSecretRef).
type AgentHeaders struct {
	Namespace string            `json:"namespace"`
	Secret    string            `json:"secret"`
	Headers   map[string]string `json:"headers"`
}

// Published is the content of Key.
type Published struct {
	Accounts     []Account      `json:"accounts"`
	AgentHeaders []AgentHeaders `json:"agentHeaders,omitempty"`
}

// Parse decodes the published accounts; empty data is an empty list.
func Parse(data []byte) (Published, error) {
	var p Published
	if len(data) == 0 {
		return p, nil
	}
	if err := json.Unmarshal(data, &p); err != nil {
		return p, fmt.Errorf("decode %s: %w", Key, err)
	}
	return p, nil
}
