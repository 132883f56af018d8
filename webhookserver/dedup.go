package webhookserver

import (
	"sync"
	"time"

	utilcache "k8s.io/apimachinery/pkg/util/cache"
)

// dedupSet remembers recently seen keys, bounded in size (LRU) and age (TTL),
// with an atomic check-and-add.
type dedupSet struct {
	mu    sync.Mutex
	cache *utilcache.LRUExpireCache
	ttl   time.Duration
}

func newDedupSet(size int, ttl time.Duration) *dedupSet {
	return &dedupSet{cache: utilcache.NewLRUExpireCache(size), ttl: ttl}
}

// seen reports whether key was added before (and not yet evicted), adding it if not.
func (d *dedupSet) seen(key string) bool { return d.seenFor(key, d.ttl) }

// seenFor is seen, remembering a new key for ttl instead of the set's TTL.
func (d *dedupSet) seenFor(key string, ttl time.Duration) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.cache.Get(key); ok {
		return true
	}
	d.cache.Add(key, struct{}{}, ttl)
	return false
}

// contains reports whether key was added (and not yet evicted), without
// adding it.
func (d *dedupSet) contains(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.cache.Get(key)
	return ok
}
