package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	twiliov1 "github.com/loquent/twilio-voice-operator/api/v1alpha1"
	"github.com/loquent/twilio-voice-operator/internal/twilio"
)

// Keys read from a TwilioAccount's credentials Secret.
const (
	SecretKeyAuthToken    = "authToken"
	SecretKeyAPIKeySID    = "apiKeySid"
	SecretKeyAPIKeySecret = "apiKeySecret"
)

// Connection is one TwilioAccount's shared Twilio client and number inventory.
type Connection struct {
	// AccountSID is the Twilio account this connection manages.
	AccountSID string
	Client     twilio.Client
	Inventory  *twilio.Inventory

	verifiedAt atomic.Int64 // unix nanoseconds of the last successful credential check
}

// VerifiedWithin reports whether these credentials were verified less than d ago.
func (c *Connection) VerifiedWithin(d time.Duration) bool {
	at := c.verifiedAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < d
}

// MarkVerified records a successful credential check.
func (c *Connection) MarkVerified() { c.verifiedAt.Store(time.Now().UnixNano()) }

// SecretError says why an account's credentials Secret is unusable; Reason
// is the condition reason to report.
type SecretError struct {
	Reason  string
	Message string
}

func (e *SecretError) Error() string { return e.Message }

// Connector builds one Twilio client per TwilioAccount and reuses it across
// reconciles, rebuilding it when the account's spec or Secret changes. The
// concurrency budget and the number inventory belong to the Twilio account,
// not to the object: every TwilioAccount naming the same account SID shares
// them, so a write through one is seen at once through the others and the
// account's concurrency limit is not exceeded by having several objects.
type Connector struct {
	// Reader reads Secrets (the manager's cached client).
	Reader client.Reader
	// Transport is the HTTP transport for Twilio calls; nil means http.DefaultTransport.
	Transport http.RoundTripper
	// DefaultMaxConcurrent caps in-flight Twilio calls for accounts whose spec
	// sets no maxConcurrentRequests.
	DefaultMaxConcurrent int

	mu     sync.Mutex
	conns  map[types.NamespacedName]*cachedConnection
	shared map[string]*accountShared // by account SID
}

// accountShared is what all connections to one Twilio account share.
type accountShared struct {
	budget    *twilio.Budget
	inventory *twilio.Inventory
}

type cachedConnection struct {
	fingerprint string
	conn        *Connection
}

// Connect returns the account's connection. It fails with *SecretError when
// the Secret is missing or incomplete.
func (c *Connector) Connect(ctx context.Context, acct *twiliov1.TwilioAccount) (*Connection, error) {
	cfg, err := c.config(ctx, acct)
	if err != nil {
		return nil, err
	}
	fp := fingerprint(cfg)
	key := client.ObjectKeyFromObject(acct)

	c.mu.Lock()
	defer c.mu.Unlock()
	if cc, ok := c.conns[key]; ok && cc.fingerprint == fp {
		return cc.conn, nil
	}
	sh := c.shared[cfg.AccountSID]
	if sh == nil || sh.budget.Size() != cfg.MaxConcurrent {
		// A changed budget applies to new requests; those in flight finish
		// on the old one.
		var inv *twilio.Inventory
		if sh != nil {
			inv = sh.inventory
		}
		sh = &accountShared{budget: twilio.NewBudget(cfg.MaxConcurrent), inventory: inv}
	}
	cfg.Budget = sh.budget
	rest, err := twilio.New(cfg)
	if err != nil {
		return nil, &SecretError{Reason: twiliov1.ReasonSecretInvalid, Message: err.Error()}
	}
	if sh.inventory == nil {
		sh.inventory = twilio.NewInventory(rest)
	} else {
		sh.inventory.SetClient(rest)
	}
	if c.shared == nil {
		c.shared = map[string]*accountShared{}
	}
	c.shared[cfg.AccountSID] = sh
	conn := &Connection{AccountSID: cfg.AccountSID, Client: rest, Inventory: sh.inventory}
	if c.conns == nil {
		c.conns = map[types.NamespacedName]*cachedConnection{}
	}
	c.conns[key] = &cachedConnection{fingerprint: fp, conn: conn}
	return conn, nil
}

// Forget drops the cached connection of a deleted account.
func (c *Connector) Forget(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.conns, key)
}

func (c *Connector) config(ctx context.Context, acct *twiliov1.TwilioAccount) (twilio.Config, error) {
	ref := acct.Spec.CredentialsSecretRef.Name
	var secret corev1.Secret
	if err := c.Reader.Get(ctx, types.NamespacedName{Namespace: acct.Namespace, Name: ref}, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			return twilio.Config{}, &SecretError{Reason: twiliov1.ReasonSecretNotFound,
				Message: fmt.Sprintf("Secret %s/%s named in spec.credentialsSecretRef does not exist", acct.Namespace, ref)}
		}
		return twilio.Config{}, fmt.Errorf("get Secret %s/%s: %w", acct.Namespace, ref, err)
	}
	token := string(secret.Data[SecretKeyAuthToken])
	keySID, keySecret := string(secret.Data[SecretKeyAPIKeySID]), string(secret.Data[SecretKeyAPIKeySecret])
	switch {
	case token == "":
		return twilio.Config{}, &SecretError{Reason: twiliov1.ReasonSecretInvalid,
			Message: fmt.Sprintf("Secret %s/%s has no %q key; it is needed to check webhook signatures", acct.Namespace, ref, SecretKeyAuthToken)}
	case (keySID == "") != (keySecret == ""):
		return twilio.Config{}, &SecretError{Reason: twiliov1.ReasonSecretInvalid,
			Message: fmt.Sprintf("Secret %s/%s must have both %q and %q, or neither", acct.Namespace, ref, SecretKeyAPIKeySID, SecretKeyAPIKeySecret)}
	}
	budget := int(acct.Spec.MaxConcurrentRequests)
	if budget == 0 {
		budget = c.DefaultMaxConcurrent
	}
	budget = max(budget, 1)
	cfg := twilio.Config{
		AccountSID:    acct.Spec.AccountSID,
		Username:      acct.Spec.AccountSID,
		Password:      token,
		APIURL:        acct.Spec.APIURL,
		Edge:          acct.Spec.Edge,
		Region:        acct.Spec.Region,
		MaxConcurrent: budget,
		Transport:     c.Transport,
	}
	if keySID != "" {
		cfg.Username, cfg.Password = keySID, keySecret
	}
	return cfg, nil
}

func fingerprint(cfg twilio.Config) string {
	h := sha256.New()
	for _, s := range []string{cfg.AccountSID, cfg.Username, cfg.Password, cfg.APIURL, cfg.Edge, cfg.Region, fmt.Sprint(cfg.MaxConcurrent)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// asSecretError unwraps a *SecretError.
func asSecretError(err error) (*SecretError, bool) {
	var se *SecretError
	ok := errors.As(err, &se)
	return se, ok
}
