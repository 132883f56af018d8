package webhookserver

import (
	"bytes"
	"errors"
	"sync"
	"time"
)

var (
	errQueueClosed = errors.New("queue closed")
	errQueueFull   = errors.New("queue full")
	errQueueStuck  = errors.New("far side did not take a control frame in time")
)

// frameQueue is what stands between one side's reader and the other side's
// connection: who may write to that connection now, and the bounded FIFO of
// frames that arrived while a write to it was in progress.
//
// The reader writes a frame itself when no write is in progress (offer; then
// nothing is queued either): one wake-up per frame, no hand-off. Only when a write
// blocks (the far side is slow, see bridge.stallAfter) does a second
// goroutine take over reading, and frames queue here until the writer has
// caught up (next). Order is kept for every frame (a mark or clear must not
// overtake the audio queued before it). Media frames are admitted only while
// the queue holds fewer than mediaFrames frames and mediaBytes bytes, and are
// dropped otherwise; control frames may use controlReserve further slots and
// block (bounded) when even those are full. Memory is therefore bounded by
// mediaBytes + controlReserve × the maximum message size; the ring itself is
// allocated only when a frame first has to wait.
//
// One producer at a time (the side's reader) and one writer at a time (the
// holder of the write); the one-slot signal channel relies on that.
type frameQueue struct {
	mu          sync.Mutex
	ring        [][]byte // nil until a frame first waits
	capacity    int
	head, n     int
	bytes       int
	mediaFrames int
	mediaBytes  int
	inputClosed bool
	failed      bool
	highWater   int

	// busy: someone holds the write (a reader's direct write, or a writer
	// draining the queue). direct: that is a reader's direct write, which
	// handedOff says another goroutine has taken the reading over from.
	// Frames are queued only while busy, so nothing waits while !busy.
	// finished: the leg's close was handed to someone (closeInput or next).
	busy, direct, handedOff, finished bool

	writable chan struct{}
}

func newFrameQueue(mediaFrames, mediaBytes, controlReserve int) *frameQueue {
	return &frameQueue{
		capacity:    mediaFrames + controlReserve,
		mediaFrames: mediaFrames,
		mediaBytes:  mediaBytes,
		writable:    make(chan struct{}, 1),
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// takeOver is called when a direct write has been in progress too long: it
// reports whether the caller is to take over reading (once per direct
// write, and not once the write has finished).
func (q *frameQueue) takeOver() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.direct || q.handedOff || q.failed {
		return false
	}
	q.handedOff = true
	return true
}

// directDone ends a direct write. It reports whether reading was taken over
// meanwhile: the caller then keeps the write and drains the queue (next).
func (q *frameQueue) directDone() (handedOff bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.direct = false
	handedOff, q.handedOff = q.handedOff, false
	if !handedOff {
		q.busy = false
	}
	return handedOff
}

// offer hands the queue one frame read from the other side. When no one
// holds the write (then nothing is queued) the caller gets it (direct) and
// must write the frame itself, then call directDone. Otherwise a copy of the
// frame is queued: a media frame only within the media limits (errQueueFull:
// dropped; isMedia tells, and is asked only then), a control frame within
// the whole capacity, waiting up to timeout
// for room (errQueueStuck) or for the writer to give the write up. Deciding
// and queueing under one lock is what keeps a queued frame from being left
// behind by a writer that just stopped. errQueueClosed: the consumer is gone
// or input was closed; the frame is dropped.
func (q *frameQueue) offer(b []byte, isMedia func([]byte) bool, timeout time.Duration) (direct bool, err error) {
	var timer *time.Timer
	classified, media := false, false
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		q.mu.Lock()
		switch {
		case q.inputClosed || q.failed:
			q.mu.Unlock()
			return false, errQueueClosed
		case !q.busy:
			q.busy, q.direct = true, true
			q.mu.Unlock()
			return true, nil
		}
		if !classified { // only a frame that is to wait needs telling apart
			classified, media = true, isMedia(b)
		}
		switch {
		case media && (q.n >= q.mediaFrames || q.bytes+len(b) > q.mediaBytes):
			q.mu.Unlock()
			return false, errQueueFull
		case q.n < q.capacity:
			q.putLocked(bytes.Clone(b))
			q.mu.Unlock()
			return false, nil
		}
		q.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(timeout)
		}
		select {
		case <-q.writable:
		case <-timer.C:
			return false, errQueueStuck
		}
	}
}

func (q *frameQueue) putLocked(b []byte) {
	if q.ring == nil {
		q.ring = make([][]byte, q.capacity)
	}
	q.ring[(q.head+q.n)%len(q.ring)] = b
	q.n++
	q.bytes += len(b)
	if q.n > q.highWater {
		q.highWater = q.n
	}
}

// next is for the holder of the write: it returns the oldest waiting frame
// (ok). When none waits it gives the write up; finish then says the input is
// closed and the caller must close the leg (exactly one caller is told so,
// here or by closeInput). After fail it returns nothing.
func (q *frameQueue) next() (b []byte, ok, finish bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.failed {
		q.busy = false
		return nil, false, false
	}
	if q.n > 0 {
		b = q.ring[q.head]
		q.ring[q.head] = nil
		q.head = (q.head + 1) % len(q.ring)
		q.n--
		q.bytes -= len(b)
		signal(q.writable)
		return b, true, false
	}
	q.busy = false
	signal(q.writable)
	if q.inputClosed && !q.finished {
		q.finished = true
		return nil, false, true
	}
	return nil, false, false
}

// closeInput says no more frames will be pushed; whoever holds the write
// delivers what is queued, then closes the leg. It reports whether no one
// holds the write, so that the caller must close the leg itself (once).
func (q *frameQueue) closeInput() (finish bool) {
	q.mu.Lock()
	q.inputClosed = true
	if !q.busy && !q.failed && !q.finished {
		q.finished, finish = true, true
	}
	q.mu.Unlock()
	signal(q.writable)
	return finish
}

// fail discards everything: the consumer is gone. Producers are released.
func (q *frameQueue) fail() {
	q.mu.Lock()
	q.failed = true
	q.ring = nil
	q.n, q.bytes = 0, 0
	q.mu.Unlock()
	signal(q.writable)
}

// stats reports the current length, the highest length seen and the capacity.
func (q *frameQueue) stats() (length, highWater, capacity int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n, q.highWater, q.capacity
}
