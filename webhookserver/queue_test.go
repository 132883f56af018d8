package webhookserver

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
)

func isM(b []byte) bool { return b[0] == 'm' }

// TestFrameQueue: direct writes while idle, FIFO while a write is held, the
// media and control bounds, and who closes the leg.
func TestFrameQueue(t *testing.T) {
	g := NewWithT(t)
	q := newFrameQueue(3, 1000, 2)
	offer := func(s string, timeout time.Duration) (bool, error) { return q.offer([]byte(s), isM, timeout) }
	direct, err := offer("m0", time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(direct).To(BeTrue(), "idle: the reader writes itself")
	_, l, c := q.stats()
	g.Expect(l).To(BeZero())
	g.Expect(c).To(Equal(5))

	// The write blocks; reading is taken over (once); frames now queue.
	g.Expect(q.takeOver()).To(BeTrue())
	g.Expect(q.takeOver()).To(BeFalse())
	for _, f := range []string{"m1", "c1", "m2"} {
		direct, err := offer(f, time.Second)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(direct).To(BeFalse(), "a write is in progress: queued")
	}
	_, err = offer("m3", time.Second)
	g.Expect(err).To(MatchError(errQueueFull), "media share full")
	_, err = offer("c2", time.Second)
	g.Expect(err).NotTo(HaveOccurred(), "control uses the reserve")
	_, err = offer("c3", time.Second)
	g.Expect(err).NotTo(HaveOccurred())
	_, err = offer("c4", time.Millisecond)
	g.Expect(err).To(MatchError(errQueueStuck), "reserve full too")
	length, high, capacity := q.stats()
	g.Expect([]int{length, high, capacity}).To(Equal([]int{5, 5, 5}))
	_, err = q.offer(append([]byte("m"), make([]byte, 1000)...), isM, time.Second)
	g.Expect(err).To(MatchError(errQueueFull), "byte bound")

	// The blocked write returns: its writer drains, FIFO, control frames included.
	g.Expect(q.directDone()).To(BeTrue(), "reading was taken over: drain")
	for _, want := range []string{"m1", "c1", "m2", "c2", "c3"} {
		b, ok, _ := q.next()
		g.Expect(ok).To(BeTrue())
		g.Expect(string(b)).To(Equal(want))
	}
	_, ok, finish := q.next()
	g.Expect(ok).To(BeFalse())
	g.Expect(finish).To(BeFalse(), "input still open")
	direct, _ = offer("m4", time.Second)
	g.Expect(direct).To(BeTrue(), "drained: direct writes again")
	g.Expect(q.directDone()).To(BeFalse())

	// A control frame waiting for room proceeds once the writer takes a frame.
	direct, _ = offer("m5", time.Second)
	g.Expect(direct).To(BeTrue())
	g.Expect(q.takeOver()).To(BeTrue())
	for range 5 {
		_, err := offer("x", time.Second)
		g.Expect(err).NotTo(HaveOccurred())
	}
	pushed := make(chan error, 1)
	go func() { _, err := offer("late", time.Minute); pushed <- err }()
	g.Expect(q.directDone()).To(BeTrue())
	_, _, _ = q.next()
	g.Eventually(pushed).Should(Receive(BeNil()))

	// Input closed while the writer drains: it delivers everything, then
	// it (not closeInput's caller) closes the leg.
	g.Expect(q.closeInput()).To(BeFalse(), "the writer closes the leg")
	n := 0
	for {
		_, ok, finish := q.next()
		if !ok {
			g.Expect(finish).To(BeTrue())
			break
		}
		n++
	}
	g.Expect(n).To(Equal(5))
	_, err = offer("m", time.Second)
	g.Expect(err).To(MatchError(errQueueClosed))

	// Input closed while idle: closeInput's caller closes the leg, once.
	q1 := newFrameQueue(1, 100, 1)
	g.Expect(q1.closeInput()).To(BeTrue())
	g.Expect(q1.closeInput()).To(BeFalse())

	// fail releases a waiting producer and discards everything.
	q2 := newFrameQueue(1, 100, 1)
	_, _ = q2.offer([]byte("m"), isM, time.Second)
	q2.takeOver()
	for _, f := range []string{"a", "b"} {
		_, err := q2.offer([]byte(f), isM, time.Second)
		g.Expect(err).NotTo(HaveOccurred())
	}
	blocked := make(chan error, 1)
	go func() { _, err := q2.offer([]byte("c"), isM, time.Minute); blocked <- err }()
	q2.fail()
	g.Eventually(blocked).Should(Receive(MatchError(errQueueClosed)))
	_, ok, _ = q2.next()
	g.Expect(ok).To(BeFalse())
	g.Expect(q2.closeInput()).To(BeFalse(), "a failed leg is not closed cleanly")
}

// TestFrameQueueNoFrameLeftBehind: a frame offered just as the writer gives
// the write up is written, never left queued with no one to write it.
func TestFrameQueueNoFrameLeftBehind(t *testing.T) {
	g := NewWithT(t)
	for range 2000 {
		q := newFrameQueue(8, 1<<20, 2)
		_, _ = q.offer([]byte("m"), isM, time.Second)
		q.takeOver()
		_, _ = q.offer([]byte("m1"), isM, time.Second)
		q.directDone()
		done := make(chan struct{})
		go func() { // the writer drains and gives the write up
			defer close(done)
			for {
				if _, ok, _ := q.next(); !ok {
					return
				}
			}
		}()
		direct, err := q.offer([]byte("m2"), isM, time.Second)
		g.Expect(err).NotTo(HaveOccurred())
		<-done
		if !direct {
			// Queued while the writer still held the write: it wrote it then.
			length, _, _ := q.stats()
			g.Expect(length).To(BeZero(), "a queued frame was left behind")
		}
	}
}
