package webhookserver

import (
	"errors"
	"sync"
	"time"
)

var (
	errQueueClosed = errors.New("queue closed")
	errQueueFull   = errors.New("queue full")
	errQueueStuck  = errors.New("far side did not take a control frame in time")
)

// frameQueue is the bounded FIFO between one side's reader and the other
// side's writer. Order is kept for every frame (a mark or clear must not
// overtake the audio queued before it). Media frames are admitted only while
// the queue holds fewer than mediaFrames frames and mediaBytes bytes, and are
// dropped otherwise; control frames may use controlReserve further slots and
// block (bounded) when even those are full. Memory is therefore bounded by
// mediaBytes + controlReserve × the maximum message size.
//
// One producer and one consumer; the one-slot signal channels rely on that.
type frameQueue struct {
	mu          sync.Mutex
	ring        [][]byte
	head, n     int
	bytes       int
	mediaFrames int
	mediaBytes  int
	inputClosed bool
	failed      bool
	highWater   int

	readable chan struct{}
	writable chan struct{}
}

func newFrameQueue(mediaFrames, mediaBytes, controlReserve int) *frameQueue {
	return &frameQueue{
		ring:        make([][]byte, mediaFrames+controlReserve),
		mediaFrames: mediaFrames,
		mediaBytes:  mediaBytes,
		readable:    make(chan struct{}, 1),
		writable:    make(chan struct{}, 1),
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// offerMedia enqueues a droppable frame without waiting. It returns
// errQueueFull when the media limits are reached and errQueueClosed when the
// consumer is gone or input was closed; the frame is dropped in both cases.
func (q *frameQueue) offerMedia(b []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.inputClosed || q.failed {
		return errQueueClosed
	}
	if q.n >= q.mediaFrames || q.bytes+len(b) > q.mediaBytes {
		return errQueueFull
	}
	q.putLocked(b)
	return nil
}

// pushControl enqueues a frame that must not be dropped, waiting up to
// timeout for room. It fails with errQueueClosed once the consumer is gone or
// input was closed, and with errQueueStuck when no room appeared in time.
func (q *frameQueue) pushControl(b []byte, timeout time.Duration) error {
	var timer *time.Timer
	for {
		q.mu.Lock()
		if q.inputClosed || q.failed {
			q.mu.Unlock()
			return errQueueClosed
		}
		if q.n < len(q.ring) {
			q.putLocked(b)
			q.mu.Unlock()
			if timer != nil {
				timer.Stop()
			}
			return nil
		}
		q.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(timeout)
			defer timer.Stop()
		}
		select {
		case <-q.writable:
		case <-timer.C:
			return errQueueStuck
		}
	}
}

func (q *frameQueue) putLocked(b []byte) {
	q.ring[(q.head+q.n)%len(q.ring)] = b
	q.n++
	q.bytes += len(b)
	if q.n > q.highWater {
		q.highWater = q.n
	}
	signal(q.readable)
}

// pop returns the oldest frame, waiting for one. ok is false once input is
// closed and the queue drained, or the queue failed.
func (q *frameQueue) pop() (b []byte, ok bool) {
	for {
		q.mu.Lock()
		if q.failed {
			q.mu.Unlock()
			return nil, false
		}
		if q.n > 0 {
			b = q.ring[q.head]
			q.ring[q.head] = nil
			q.head = (q.head + 1) % len(q.ring)
			q.n--
			q.bytes -= len(b)
			q.mu.Unlock()
			signal(q.writable)
			return b, true
		}
		closed := q.inputClosed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		<-q.readable
	}
}

// closeInput says no more frames will be pushed; pop drains what is queued.
func (q *frameQueue) closeInput() {
	q.mu.Lock()
	q.inputClosed = true
	q.mu.Unlock()
	signal(q.readable)
	signal(q.writable)
}

// fail discards everything: the consumer is gone. Producers are released.
func (q *frameQueue) fail() {
	q.mu.Lock()
	q.failed = true
	for i := range q.ring {
		q.ring[i] = nil
	}
	q.n, q.bytes = 0, 0
	q.mu.Unlock()
	signal(q.readable)
	signal(q.writable)
}

// stats reports the current length, the highest length seen and the capacity.
func (q *frameQueue) stats() (length, highWater, capacity int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n, q.highWater, len(q.ring)
}
