package realserver

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Series are scraped Prometheus samples, keyed by the series as exposed:
// `name{label="value",...}` (or just name).
type Series map[string]float64

var scrapeClient = &http.Client{Timeout: 10 * time.Second}

// Scrape reads a Prometheus text exposition (a /metrics URL).
func Scrape(url string) (Series, error) {
	resp, err := scrapeClient.Get(url) // #nosec G107 -- loopback metrics of a process the bench started
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: status %d", url, resp.StatusCode)
	}
	out := Series{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

// Sum adds the samples of metric name whose labels contain every one of
// labels (each `key="value"`).
func (s Series) Sum(name string, labels ...string) float64 {
	var total float64
	for k, v := range s {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(k, l) {
				ok = false
				break
			}
		}
		if ok {
			total += v
		}
	}
	return total
}
