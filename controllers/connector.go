package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	// authToken checks the account's webhook signatures; it is published to
	// the webhook server once the account is verified. Never logged.
	authToken string

	verifiedAt atomic.Int64 // unix nanoseconds of the last successful credential check
	// preflight is the latest preflight of the public voice path with these
	// credentials (see preflightGate).
	preflight preflightState
	// services caches the account's Messaging Services (see messaging.go).
	services servicesCache
}

// VerifiedWithin reports whether these credentials were verified less than d ago.
func (c *Connection) VerifiedWithin(d time.Duration) bool {
	at := c.verifiedAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < d
}

// MarkVerified records a successful credential check by the SID's owner,
// and makes the account's shared inventory list with these credentials.
func (c *Connection) MarkVerified() {
	c.verifiedAt.Store(time.Now().UnixNano())
	c.Trust()
}

// Trust makes the account's shared inventory list with this connection's
// credentials. Call it only for a connection of a TwilioAccount the operator
// verified (Ready=True Verified), so that a tenant's made-up credentials for
// someone else's SID never read, or break, the owner's inventory.
func (c *Connection) Trust() { c.Inventory.SetClient(c.Client) }

// ConfigError says why an account cannot be connected as declared (its
// credentials Secret is unusable, its API URL is not allowed); Reason is the
// condition reason to report.
type ConfigError struct {
	Reason  string
	Message string
}

func (e *ConfigError) Error() string { return e.Message }

// Connector builds one Twilio client per TwilioAccount and reuses it across
// reconciles, rebuilding it when the account's spec or Secret changes. The
// concurrency budget and the number inventory belong to the Twilio account,
// not to the object: every TwilioAccount naming the same account SID shares
// them, so a write through one is seen at once through the others and the
// account's concurrency limit is not exceeded by having several objects.
type Connector struct {
	// Reader reads Secrets' metadata (the manager's cached client, backed by
	// a metadata-only informer: the manager caches no Secret's data).
	Reader client.Reader
	// APIReader reads a referenced Secret's data from the API server when its
	// resourceVersion changed; nil means Reader.
	APIReader client.Reader
	// AllowedAPIURLs lists the spec.apiURL origins (scheme://host[:port];
	// without a port any port of that host) accounts may use besides
	// Twilio's own API hosts. Credentials are only ever sent to these.
	AllowedAPIURLs []string
	// Transport is the HTTP transport for Twilio calls; nil means http.DefaultTransport.
	Transport http.RoundTripper
	// DefaultMaxConcurrent caps in-flight Twilio calls for accounts whose spec
	// sets no maxConcurrentRequests.
	DefaultMaxConcurrent int

	mu          sync.Mutex
	conns       map[types.NamespacedName]*cachedConnection
	inventories map[string]*twilio.Inventory // by account SID
	budgets     map[string]*twilio.Budget    // by account SID and size
	secrets     map[types.NamespacedName]secretData
}

// secretData is what the Connector keeps of a credentials Secret, with the
// resourceVersion it was read at.
type secretData struct {
	resourceVersion                 string
	authToken, apiKeySID, apiKeySec string
}

type cachedConnection struct {
	fingerprint string
	conn        *Connection
}

// Connect returns the account's connection. It fails with *ConfigError when
// the Secret is missing or incomplete or the API URL is not allowed.
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
	// The account's concurrency budget is shared by every connection with
	// the same SID and size: a TwilioAccount declaring another size (any
	// tenant can name any SID) gets its own and cannot shrink or widen the
	// owner's.
	budgetKey := fmt.Sprintf("%s/%d", cfg.AccountSID, cfg.MaxConcurrent)
	budget := c.budgets[budgetKey]
	if budget == nil {
		budget = twilio.NewBudget(cfg.MaxConcurrent)
		if c.budgets == nil {
			c.budgets = map[string]*twilio.Budget{}
		}
		c.budgets[budgetKey] = budget
	}
	cfg.Budget = budget
	rest, err := twilio.New(cfg.Config)
	if err != nil {
		return nil, &ConfigError{Reason: twiliov1.ReasonSecretInvalid, Message: err.Error()}
	}
	// The inventory is shared per SID; which credentials list it is chosen
	// only by verified connections (Connection.Trust), never by a new,
	// unverified one.
	inv := c.inventories[cfg.AccountSID]
	if inv == nil {
		inv = twilio.NewInventory(rest)
		if c.inventories == nil {
			c.inventories = map[string]*twilio.Inventory{}
		}
		c.inventories[cfg.AccountSID] = inv
	}
	conn := &Connection{AccountSID: cfg.AccountSID, Client: rest, Inventory: inv, authToken: cfg.authToken}
	if c.conns == nil {
		c.conns = map[types.NamespacedName]*cachedConnection{}
	}
	c.conns[key] = &cachedConnection{fingerprint: fp, conn: conn}
	return conn, nil
}

// InventoryOf returns the shared inventory of a Twilio account SID, or nil
// when no TwilioAccount for it was connected yet.
func (c *Connector) InventoryOf(accountSID string) *twilio.Inventory {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inventories[accountSID]
}

// VerifiedToken returns the auth token of the account's current connection
// if this process verified it against Twilio; ok is false otherwise.
func (c *Connector) VerifiedToken(key types.NamespacedName) (token string, ok bool) {
	c.mu.Lock()
	cc := c.conns[key]
	c.mu.Unlock()
	if cc == nil || cc.conn.verifiedAt.Load() == 0 {
		return "", false
	}
	return cc.conn.authToken, true
}

// Forget drops the cached connection of a deleted account.
func (c *Connector) Forget(key types.NamespacedName) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.conns, key)
}

// accountConfig is a twilio.Config plus the auth token for webhooks.
type accountConfig struct {
	twilio.Config
	authToken string
}

func (c *Connector) config(ctx context.Context, acct *twiliov1.TwilioAccount) (accountConfig, error) {
	if err := c.checkAPIURL(acct.Spec.APIURL); err != nil {
		return accountConfig{}, err
	}
	ref := acct.Spec.CredentialsSecretRef.Name
	sd, err := c.secret(ctx, types.NamespacedName{Namespace: acct.Namespace, Name: ref})
	if err != nil {
		return accountConfig{}, err
	}
	switch {
	case sd.authToken == "":
		return accountConfig{}, &ConfigError{Reason: twiliov1.ReasonSecretInvalid,
			Message: fmt.Sprintf("Secret %s/%s has no %q key; it is needed to check webhook signatures", acct.Namespace, ref, SecretKeyAuthToken)}
	case (sd.apiKeySID == "") != (sd.apiKeySec == ""):
		return accountConfig{}, &ConfigError{Reason: twiliov1.ReasonSecretInvalid,
			Message: fmt.Sprintf("Secret %s/%s must have both %q and %q, or neither", acct.Namespace, ref, SecretKeyAPIKeySID, SecretKeyAPIKeySecret)}
	}
	budget := int(acct.Spec.MaxConcurrentRequests)
	if budget == 0 {
		budget = c.DefaultMaxConcurrent
	}
	budget = max(budget, 1)
	cfg := accountConfig{authToken: sd.authToken, Config: twilio.Config{
		AccountSID:    acct.Spec.AccountSID,
		Username:      acct.Spec.AccountSID,
		Password:      sd.authToken,
		APIURL:        acct.Spec.APIURL,
		Edge:          acct.Spec.Edge,
		Region:        acct.Spec.Region,
		MaxConcurrent: budget,
		Transport:     c.Transport,
	}}
	if sd.apiKeySID != "" {
		cfg.Username, cfg.Password = sd.apiKeySID, sd.apiKeySec
	}
	return cfg, nil
}

// secret returns a credentials Secret's keys. Its metadata comes from the
// cache; its data is read from the API server only when its resourceVersion
// changed, so the manager keeps the data of referenced Secrets only, and only
// the three keys it uses.
func (c *Connector) secret(ctx context.Context, key types.NamespacedName) (secretData, error) {
	notFound := &ConfigError{Reason: twiliov1.ReasonSecretNotFound,
		Message: fmt.Sprintf("Secret %s/%s named in spec.credentialsSecretRef does not exist", key.Namespace, key.Name)}
	meta := &metav1.PartialObjectMetadata{}
	meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	if err := c.Reader.Get(ctx, key, meta); err != nil {
		if apierrors.IsNotFound(err) {
			return secretData{}, notFound
		}
		return secretData{}, fmt.Errorf("get Secret %s: %w", key, err)
	}
	c.mu.Lock()
	sd, ok := c.secrets[key]
	c.mu.Unlock()
	if ok && sd.resourceVersion == meta.ResourceVersion {
		return sd, nil
	}
	reader := c.APIReader
	if reader == nil {
		reader = c.Reader
	}
	var secret corev1.Secret
	if err := reader.Get(ctx, key, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			return secretData{}, notFound
		}
		return secretData{}, fmt.Errorf("get Secret %s: %w", key, err)
	}
	sd = secretData{
		resourceVersion: secret.ResourceVersion,
		authToken:       string(secret.Data[SecretKeyAuthToken]),
		apiKeySID:       string(secret.Data[SecretKeyAPIKeySID]),
		apiKeySec:       string(secret.Data[SecretKeyAPIKeySecret]),
	}
	c.mu.Lock()
	if c.secrets == nil {
		c.secrets = map[types.NamespacedName]secretData{}
	}
	c.secrets[key] = sd
	c.mu.Unlock()
	return sd, nil
}

// checkAPIURL refuses an apiURL that is neither one of Twilio's own API
// hosts nor allowed by the manager's --allowed-api-urls: the manager sends
// the account's credentials there.
func (c *Connector) checkAPIURL(raw string) error {
	if raw == "" || apiURLAllowed(raw, c.AllowedAPIURLs) {
		return nil
	}
	return &ConfigError{Reason: twiliov1.ReasonAPIURLNotAllowed,
		Message: fmt.Sprintf("spec.apiURL %q is not allowed: the operator sends credentials only to Twilio's API (https://api.twilio.com or another https://*.twilio.com host) unless the manager is started with --allowed-api-urls naming this URL; remove spec.apiURL or ask the cluster operator", raw)}
}

// apiURLAllowed reports whether raw is https on a twilio.com host, or matches
// an allowed origin (an entry without a port matches any port of its host).
func apiURLAllowed(raw string, allowed []string) bool {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return false
	}
	host := strings.ToLower(u.Hostname())
	if u.Scheme == "https" && (host == "twilio.com" || strings.HasSuffix(host, ".twilio.com")) {
		return true
	}
	for _, entry := range allowed {
		a, err := url.Parse(entry)
		if err != nil || a.Scheme != u.Scheme || !strings.EqualFold(a.Hostname(), host) {
			continue
		}
		if a.Port() == "" || a.Port() == u.Port() {
			return true
		}
	}
	return false
}

func fingerprint(cfg accountConfig) string {
	h := sha256.New()
	for _, s := range []string{cfg.AccountSID, cfg.Username, cfg.Password, cfg.authToken, cfg.APIURL, cfg.Edge, cfg.Region, fmt.Sprint(cfg.MaxConcurrent)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// asConfigError unwraps a *ConfigError.
func asConfigError(err error) (*ConfigError, bool) {
	var ce *ConfigError
	ok := errors.As(err, &ce)
	return ce, ok
}
