package webhookserver

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// StreamTokenSecretKey is the key, in the Secret named by --stream-token-secret,
// that holds the HMAC key for per-call stream tokens.
const StreamTokenSecretKey = "key"

// minTokenKeyBytes is the shortest accepted HMAC key (256 bits).
const minTokenKeyBytes = 32

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
// Hand-written on crypto/hmac rather than a JWT library on purpose: the claims
// are fixed and verified by this program only, so there is no algorithm
// negotiation to get wrong (no "alg" header), and the token stays short
// (it travels in TwiML and in the stream's start message).
type tokenSigner struct {
	key []byte
	ttl time.Duration
	now func() time.Time
}

// issue returns a token for the call that expires ttl from now.
// Format: v1.<expiry unix seconds>.<base64url HMAC>.
func (t tokenSigner) issue(callSID, to, accountSID string) string {
	exp := t.now().Add(t.ttl).Unix()
	return tokenVersion + "." + strconv.FormatInt(exp, 10) + "." + t.mac(callSID, to, accountSID, exp)
}

// verify checks that token was issued with this key for exactly this call,
// number and account, and has not expired.
func (t tokenSigner) verify(token, callSID, to, accountSID string) error {
	version, rest, ok := strings.Cut(token, ".")
	if !ok || version != tokenVersion {
		return errTokenMalformed
	}
	expRaw, sig, ok := strings.Cut(rest, ".")
	if !ok {
		return errTokenMalformed
	}
	exp, err := strconv.ParseInt(expRaw, 10, 64)
	if err != nil {
		return errTokenMalformed
	}
	// The MAC is compared before the expiry so that a forged token is
	// reported as a mismatch, never as "expired".
	if !hmac.Equal([]byte(sig), []byte(t.mac(callSID, to, accountSID, exp))) {
		return errTokenMismatch
	}
	if t.now().Unix() > exp {
		return errTokenExpired
	}
	return nil
}

// mac length-prefixes every field so that no two different claim sets can
// produce the same input.
func (t tokenSigner) mac(callSID, to, accountSID string, exp int64) string {
	h := hmac.New(sha256.New, t.key)
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

// LoadStreamTokenKey reads the stream token HMAC key from the Secret secret
// (key "key") through r, or, when secret is empty, from the file path.
// Trailing newlines are trimmed (files and `kubectl create secret --from-file`
// often end in one); the key must then be at least 32 bytes.
func LoadStreamTokenKey(ctx context.Context, r client.Reader, secret types.NamespacedName, path string) ([]byte, error) {
	var key []byte
	if secret.Name != "" {
		var s corev1.Secret
		if err := r.Get(ctx, secret, &s); err != nil {
			return nil, fmt.Errorf("read stream token secret %s: %w", secret, err)
		}
		v, ok := s.Data[StreamTokenSecretKey]
		if !ok {
			return nil, fmt.Errorf("stream token secret %s has no key %q", secret, StreamTokenSecretKey)
		}
		key = v
	} else {
		v, err := os.ReadFile(path) // #nosec G304 -- the path is the operator's own --stream-token-key-file
		if err != nil {
			return nil, fmt.Errorf("read stream token key file: %w", err)
		}
		key = v
	}
	key = []byte(strings.TrimRight(string(key), "\r\n"))
	if len(key) < minTokenKeyBytes {
		return nil, fmt.Errorf("stream token key is %d bytes, need at least %d (e.g. `openssl rand -base64 48`)", len(key), minTokenKeyBytes)
	}
	return key, nil
}
