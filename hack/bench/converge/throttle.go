package main

import (
	"fmt"
	"time"

	dto "github.com/prometheus/client_model/go"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Client-side throttling of Kubernetes requests, read from client-go's
// rate-limiter histogram (rest_client_rate_limiter_duration_seconds), which
// every request of every client in this process observes, waiting or not.
// The operator's clients each keep one token bucket (-kube-api-qps, burst
// 2×) per resource type, and its API reader and event recorder have their
// own, so no single "requests ÷ QPS" bound describes them; the measured wait
// does.
const rateLimiterMetric = "rest_client_rate_limiter_duration_seconds"

func init() {
	ctrlmetrics.RegisterRESTClientMetrics(ctrlmetrics.MetricRateLimiterLatency)
}

// throttleSample is the histogram summed over verbs and hosts.
type throttleSample struct {
	requests uint64
	wait     time.Duration
	over1s   uint64 // requests that waited more than 1s
}

func sampleThrottle() throttleSample {
	var s throttleSample
	families, err := ctrlmetrics.Registry.Gather()
	if err != nil {
		return s
	}
	for _, f := range families {
		if f.GetName() != rateLimiterMetric {
			continue
		}
		for _, m := range f.GetMetric() {
			h := m.GetHistogram()
			s.requests += h.GetSampleCount()
			s.wait += time.Duration(h.GetSampleSum() * float64(time.Second))
			s.over1s += h.GetSampleCount() - cumulativeAt(h, 1)
		}
	}
	return s
}

// cumulativeAt is how many observations were ≤ le (le must be a bucket bound).
func cumulativeAt(h *dto.Histogram, le float64) uint64 {
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == le {
			return b.GetCumulativeCount()
		}
	}
	return h.GetSampleCount()
}

func (s throttleSample) since(before throttleSample) throttleSample {
	return throttleSample{requests: s.requests - before.requests, wait: s.wait - before.wait, over1s: s.over1s - before.over1s}
}

func (s throttleSample) String() string {
	if s.requests == 0 {
		return "no requests"
	}
	mean := s.wait / time.Duration(s.requests)
	return fmt.Sprintf("%s waited in all, %s mean per request, %d waited > 1s", s.wait.Round(time.Millisecond), mean.Round(time.Microsecond), s.over1s)
}
