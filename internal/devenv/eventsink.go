package devenv

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
)

// EventSink is a CloudEvents sink in this process, as a Knative broker or an
// Argo Events webhook source would be in a cluster: the CloudEvents SDK's
// HTTP receiver on a loopback port. The webhook server reaches it because
// devenv runs it with --allow-loopback-agents (its agent egress policy
// applies to sinks too).
type EventSink struct {
	// URL is where the sink listens (http://127.0.0.1:PORT/).
	URL string

	stop context.CancelFunc
	done chan struct{}

	mu       sync.Mutex
	events   []cloudevents.Event
	received chan struct{} // closed and replaced on every event
}

// StartEventSink starts a sink on a free loopback port; Close stops it.
func StartEventSink() (*EventSink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p, err := cloudevents.NewHTTP(cloudevents.WithListener(ln))
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("CloudEvents HTTP protocol: %w", err)
	}
	c, err := cloudevents.NewClient(p)
	if err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("CloudEvents client: %w", err)
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &EventSink{URL: "http://" + ln.Addr().String() + "/", stop: stop, done: make(chan struct{}), received: make(chan struct{})}
	go func() {
		defer close(s.done)
		_ = c.StartReceiver(ctx, func(e cloudevents.Event) (*cloudevents.Event, cloudevents.Result) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.events = append(s.events, e)
			close(s.received)
			s.received = make(chan struct{})
			return s.reply(e), cloudevents.ResultACK
		})
	}()
	return s, nil
}

// SMSReply is what the sink answers every incoming message with: a
// message.reply event, which the webhook server turns into the SMS Twilio
// sends back.
const SMSReply = "Thanks! An agent will call you back shortly."

// reply answers a message.received event with a message.reply event, as an
// agent platform's sink might; other events get no answer.
func (s *EventSink) reply(e cloudevents.Event) *cloudevents.Event {
	if e.Type() != "io.loquent.twilio.message.received" {
		return nil
	}
	r := cloudevents.NewEvent()
	r.SetID(e.ID() + "-reply")
	r.SetSource("/devenv/sink")
	r.SetType("io.loquent.twilio.message.reply")
	if err := r.SetData(cloudevents.ApplicationJSON, map[string]string{"body": SMSReply}); err != nil {
		return nil
	}
	return &r
}

// Events returns the events received so far, in order.
func (s *EventSink) Events() []cloudevents.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]cloudevents.Event(nil), s.events...)
}

// Wait returns the first event received that match accepts, waiting for it
// up to timeout.
func (s *EventSink) Wait(ctx context.Context, timeout time.Duration, match func(cloudevents.Event) bool) (cloudevents.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		s.mu.Lock()
		for _, e := range s.events {
			if match(e) {
				s.mu.Unlock()
				return e, nil
			}
		}
		next := s.received
		s.mu.Unlock()
		select {
		case <-next:
		case <-ctx.Done():
			return cloudevents.Event{}, fmt.Errorf("no matching event at the sink after %s (%d received)", timeout, len(s.Events()))
		}
	}
}

// Close stops the sink.
func (s *EventSink) Close() {
	s.stop()
	<-s.done
}
