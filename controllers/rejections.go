package controllers

import (
	"sync"

	"k8s.io/apimachinery/pkg/types"

	"github.com/loquent/twilio-voice-operator/internal/twilio"
)

// writeAttempt is everything a routing write depends on: the object (UID and
// generation, so its spec), the account connection (rebuilt when the
// account's spec or Secret changes), the number's live routing and the kind
// of write. The same attempt always sends the same request.
type writeAttempt struct {
	uid        types.UID
	generation int64
	conn       *Connection
	live       twilio.Routing
	restore    bool
}

// rejections remembers, per object, the routing write Twilio refused with a
// terminal (4xx) error, so that no later reconcile (a poll, a watch event,
// the operator's own writes) sends it again until one of its inputs changed.
// It lives in memory: a restarted operator tries each refused write once.
type rejections struct {
	mu sync.Mutex
	m  map[types.NamespacedName]rejection
}

type rejection struct {
	attempt writeAttempt
	err     error
}

// refused returns the error Twilio gave for this exact attempt, or nil when
// the attempt is new.
func (r *rejections) refused(key types.NamespacedName, a writeAttempt) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rej, ok := r.m[key]; ok && rej.attempt == a {
		return rej.err
	}
	return nil
}

// record stores the outcome of an attempt: a terminal error is remembered,
// anything else forgets what was remembered for the object.
func (r *rejections) record(key types.NamespacedName, a writeAttempt, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil || twilio.ClassOf(err) != twilio.ClassTerminal {
		delete(r.m, key)
		return
	}
	if r.m == nil {
		r.m = map[types.NamespacedName]rejection{}
	}
	r.m[key] = rejection{attempt: a, err: err}
}

// forget drops what is remembered for a deleted object.
func (r *rejections) forget(key types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.m, key)
}
