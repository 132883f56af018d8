package twilio

import (
	"context"
	"sync"
	"time"
)

// Inventory is one account's numbers as of its last list call. Reconciles of
// many numbers share it, so observing N numbers costs one paged list call per
// interval instead of N fetches. At most one list runs at a time; callers that
// need a refresh while one is running wait for it.
type Inventory struct {
	now func() time.Time

	mu         sync.Mutex
	client     Client
	byNumber   map[string]Number
	listedAt   time.Time
	refreshing chan struct{} // closed when the running refresh ends
	lastErr    error
	// seq orders Records and list starts; recorded holds, per number, the
	// seq of its last Record, so a list that started earlier (and may carry
	// the state from before our write) does not overwrite it.
	seq      uint64
	recorded map[string]uint64
}

// NewInventory returns an empty inventory over c.
func NewInventory(c Client) *Inventory {
	return &Inventory{client: c, now: time.Now}
}

// SetClient makes later lists use c, e.g. the newest credentials of the
// account when several TwilioAccounts name the same account SID.
func (i *Inventory) SetClient(c Client) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.client = c
}

// Lookup returns the number with this E.164 value from a list no older than
// maxAge, listing the account if the last list is older. found is false when
// the account's list does not contain the number.
func (i *Inventory) Lookup(ctx context.Context, e164 string, maxAge time.Duration) (n Number, found bool, err error) {
	if err := i.ensureFresh(ctx, maxAge); err != nil {
		return Number{}, false, err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	n, found = i.byNumber[e164]
	return n, found, nil
}

// Count returns how many numbers the account has, from a list no older than maxAge.
func (i *Inventory) Count(ctx context.Context, maxAge time.Duration) (int, error) {
	if err := i.ensureFresh(ctx, maxAge); err != nil {
		return 0, err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	return len(i.byNumber), nil
}

// Record replaces the cached copy of n after a fetch or a write, so the next
// lookup does not report a change this operator made itself as drift.
func (i *Inventory) Record(n Number) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if n.PhoneNumber == "" {
		return
	}
	if i.byNumber == nil {
		i.byNumber = map[string]Number{}
	}
	if i.recorded == nil {
		i.recorded = map[string]uint64{}
	}
	i.seq++
	i.byNumber[n.PhoneNumber] = n
	i.recorded[n.PhoneNumber] = i.seq
}

// Forget drops the cached list; the next lookup lists again.
func (i *Inventory) Forget() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.listedAt = time.Time{}
}

func (i *Inventory) ensureFresh(ctx context.Context, maxAge time.Duration) error {
	for {
		i.mu.Lock()
		if !i.listedAt.IsZero() && i.now().Sub(i.listedAt) <= maxAge {
			i.mu.Unlock()
			return nil
		}
		if wait := i.refreshing; wait != nil {
			i.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return ctx.Err()
			}
			i.mu.Lock()
			fresh := !i.listedAt.IsZero() && i.now().Sub(i.listedAt) <= maxAge
			err := i.lastErr
			i.mu.Unlock()
			if fresh {
				return nil
			}
			if err != nil {
				return err
			}
			continue
		}
		done := make(chan struct{})
		i.refreshing = done
		i.seq++
		started := i.seq
		c := i.client
		i.mu.Unlock()

		nums, err := c.ListNumbers(ctx)

		i.mu.Lock()
		i.lastErr = err
		if err == nil {
			i.merge(nums, started)
			i.listedAt = i.now()
		}
		i.refreshing = nil
		close(done)
		i.mu.Unlock()
		return err
	}
}

// merge replaces the inventory with a list that started at seq started,
// keeping the numbers Recorded after that: the list may predate those writes.
func (i *Inventory) merge(nums []Number, started uint64) {
	fresh := make(map[string]Number, len(nums))
	for _, n := range nums {
		fresh[n.PhoneNumber] = n
	}
	for e164, at := range i.recorded {
		if at > started {
			if n, ok := i.byNumber[e164]; ok {
				fresh[e164] = n
			}
			continue
		}
		delete(i.recorded, e164)
	}
	i.byNumber = fresh
}
