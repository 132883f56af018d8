package webhookserver

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// StreamTokenSecretKey is the key, in the Secret named by --stream-token-secret,
// that holds the HMAC keys for per-call stream tokens.
const StreamTokenSecretKey = "key"

// minTokenKeyBytes is the shortest accepted HMAC key (256 bits).
const minTokenKeyBytes = 32

// maxTokenKeys bounds the keys one value may hold: a rotation needs two, and
// a token that matches none costs one HMAC per key.
const maxTokenKeys = 3

const tokenVersion = "v1"

var (
	errTokenMalformed = errors.New("stream token malformed")
	errTokenExpired   = errors.New("stream token expired")
	errTokenMismatch  = errors.New("stream token does not match this call")
)

// tokenSigner issues and verifies per-call stream tokens. A token binds a
// media stream to a call this server (or any replica sharing the key) answered:
// HMAC-SHA256 over the call SID, the called number, the account SID and an
// expiry. It is checked once, when the stream starts, so calls may last longer
// than the TTL.
//
// keys[0] signs; every key verifies. Replicas that briefly hold different
// key lists during a rotation therefore still accept each other's tokens
// (README: rotating the stream-token key).
//
// Hand-written on crypto/hmac rather than a JWT library on purpose: the claims
// are fixed and verified by this program only, so there is no algorithm
// negotiation to get wrong (no "alg" header), and the token stays short
// (it travels in TwiML and in the stream's start message).
type tokenSigner struct {
	keys [][]byte
	ttl  time.Duration
	now  func() time.Time
}

// issue returns a token for the call that expires ttl from now.
// Format: v1.<expiry unix seconds>.<base64url HMAC>.
func (t tokenSigner) issue(callSID, to, accountSID string) string {
	exp := t.now().Add(t.ttl).Unix()
	return tokenVersion + "." + strconv.FormatInt(exp, 10) + "." + mac(t.keys[0], callSID, to, accountSID, exp)
}

// verify checks that token was issued with one of the keys for exactly this
// call, number and account, and has not expired.
func (t tokenSigner) verify(token, callSID, to, accountSID string) error {
	_, err := t.verifyExp(token, callSID, to, accountSID)
	return err
}

// verifyExp is verify, returning the token's expiry (Unix seconds) too.
func (t tokenSigner) verifyExp(token, callSID, to, accountSID string) (int64, error) {
	version, rest, ok := strings.Cut(token, ".")
	if !ok || version != tokenVersion {
		return 0, errTokenMalformed
	}
	expRaw, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return 0, errTokenMalformed
	}
	exp, err := strconv.ParseInt(expRaw, 10, 64)
	if err != nil {
		return 0, errTokenMalformed
	}
	// The MAC is compared before the expiry so that a forged token is
	// reported as a mismatch, never as "expired".
	matched := false
	for _, key := range t.keys {
		matched = matched || hmac.Equal([]byte(sig), []byte(mac(key, callSID, to, accountSID, exp)))
	}
	if !matched {
		return 0, errTokenMismatch
	}
	if t.now().Unix() > exp {
		return 0, errTokenExpired
	}
	return exp, nil
}

// mac length-prefixes every field so that no two different claim sets can
// produce the same input.
func mac(key []byte, callSID, to, accountSID string, exp int64) string {
	h := hmac.New(sha256.New, key)
	var n [8]byte
	for _, f := range []string{"twilio-voice-operator/stream-token/" + tokenVersion, callSID, to, accountSID} {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	binary.BigEndian.PutUint64(n[:], uint64(exp))
	h.Write(n[:])
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// LoadStreamTokenKeys reads the stream token HMAC keys from the Secret secret
// (key "key") through r, or, when secret is empty, from the file path. A text
// value holds one key per line, at most maxTokenKeys: the first signs new
// tokens and every one verifies. Line ends and blank lines are ignored (files
// and `kubectl create secret --from-file` often end in a newline). A value
// that is not text (raw random bytes) is one key, whatever bytes it holds.
// Each key must be at least 32 bytes.
func LoadStreamTokenKeys(ctx context.Context, r client.Reader, secret types.NamespacedName, path string) ([][]byte, error) {
	var value []byte
	if secret.Name != "" {
		var s corev1.Secret
		if err := r.Get(ctx, secret, &s); err != nil {
			return nil, fmt.Errorf("read stream token secret %s: %w", secret, err)
		}
		v, ok := s.Data[StreamTokenSecretKey]
		if !ok {
			return nil, fmt.Errorf("stream token secret %s has no key %q", secret, StreamTokenSecretKey)
		}
		value = v
	} else {
		v, err := os.ReadFile(path) // #nosec G304 -- the path is the operator's own --stream-token-key-file
		if err != nil {
			return nil, fmt.Errorf("read stream token key file: %w", err)
		}
		value = v
	}
	return parseStreamTokenKeys(string(value))
}

// parseStreamTokenKeys splits a stream token value into its keys (see
// LoadStreamTokenKeys).
func parseStreamTokenKeys(value string) ([][]byte, error) {
	if !isText(value) {
		key := strings.TrimRight(value, "\r\n")
		if len(key) < minTokenKeyBytes {
			return nil, fmt.Errorf("stream token key is %d bytes, need at least %d (e.g. `openssl rand -base64 48`)", len(key), minTokenKeyBytes)
		}
		return [][]byte{[]byte(key)}, nil
	}
	var keys [][]byte
	for i, line := range strings.Split(value, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		if len(line) < minTokenKeyBytes {
			return nil, fmt.Errorf("stream token key on line %d is %d bytes, need at least %d; the value holds one text key per line (e.g. `openssl rand -base64 48`)",
				i+1, len(line), minTokenKeyBytes)
		}
		keys = append(keys, []byte(line))
	}
	switch {
	case len(keys) == 0:
		return nil, fmt.Errorf("stream token key is empty; it needs a key of at least %d bytes (e.g. `openssl rand -base64 48`)", minTokenKeyBytes)
	case len(keys) > maxTokenKeys:
		return nil, fmt.Errorf("stream token value holds %d keys, at most %d: the signing key first, then the keys still accepted during a rotation", len(keys), maxTokenKeys)
	}
	return keys, nil
}

// validTokenKeys checks a key list a server may use.
func validTokenKeys(keys [][]byte) error {
	if len(keys) == 0 || len(keys) > maxTokenKeys {
		return fmt.Errorf("between 1 and %d stream token keys are required, got %d", maxTokenKeys, len(keys))
	}
	for i, k := range keys {
		if len(k) < minTokenKeyBytes {
			return fmt.Errorf("stream token key %d must be at least %d bytes", i+1, minTokenKeyBytes)
		}
	}
	return nil
}

// WatchStreamTokenKeys re-reads the stream token keys with load every
// interval until ctx ends, and hands a changed value to set: a rotation
// step needs no rollout, only the Secret's update reaching the pods. A value
// that does not load, or that set refuses, leaves the keys in use as they
// are. in is the value in use at the start.
func WatchStreamTokenKeys(ctx context.Context, interval time.Duration, in [][]byte, load func(context.Context) ([][]byte, error),
	set func([][]byte) error, m *Metrics, log logr.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	inUse, lastErr := fingerprint(in), ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		keys, err := load(ctx)
		if err == nil && fingerprint(keys) == inUse {
			lastErr = ""
			continue
		}
		if err == nil {
			err = set(keys)
		}
		if err != nil {
			if err.Error() != lastErr { // once per distinct problem, not every interval
				m.StreamTokenKeyReloads.WithLabelValues(reloadInvalid).Inc()
				log.Error(err, "Stream token keys not reloaded; the keys in use stay", "fingerprint", inUse[:12])
				lastErr = err.Error()
			}
			continue
		}
		inUse, lastErr = fingerprint(keys), ""
		m.StreamTokenKeyReloads.WithLabelValues(reloadReloaded).Inc()
		log.Info("Stream token keys reloaded", "keys", len(keys), "fingerprint", inUse[:12])
	}
}

// fingerprint identifies a key list in logs without revealing it: the hex
// SHA-256 of the keys in order, the signing key first.
func fingerprint(keys [][]byte) string {
	h := sha256.New()
	for _, k := range keys {
		h.Write(k)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// isText reports whether v is printable ASCII lines: a value of several keys.
// Random binary bytes are text with odds below 1 in 10^14 for 32 bytes.
func isText(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < 0x20 || c > 0x7e) && c != '\n' && c != '\r' && c != '\t' {
			return false
		}
	}
	return true
}
