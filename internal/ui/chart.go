package ui

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Chart is the delivery rate and success ratio of an endpoint over a window, in
// buckets, with the geometry of its SVG bars computed here so the template only draws.
type Chart struct {
	Window  time.Duration
	Buckets []Bucket
	// Width and Height of the SVG's view box; bars are scaled to the fullest bucket.
	Width, Height int
	Max           int
	OK, Failed    int
	// Summary says in words what the bars show (screen readers, and the tests).
	Summary string
}

// Bucket is one column of the chart.
type Bucket struct {
	Start      time.Time
	OK, Failed int
	// X, Width and the heights of the two stacked bars, in view-box units.
	X, W, OKH, FailH, OKY, FailY float64
	Label                        string
}

const (
	chartW = 600
	chartH = 120
)

// deliveryChart buckets attempts made in the window ending now. Attempts outside it are
// left out.
func deliveryChart(attempts []Attempt, now time.Time, window time.Duration, n int) Chart {
	c := Chart{Window: window, Buckets: make([]Bucket, n), Width: chartW, Height: chartH}
	start := now.Add(-window)
	step := window / time.Duration(n)
	for i := range c.Buckets {
		c.Buckets[i].Start = start.Add(time.Duration(i) * step)
	}
	for _, a := range attempts {
		if a.Time.Before(start) || a.Time.After(now) {
			continue
		}
		i := min(int(a.Time.Sub(start)/step), n-1)
		if a.OK() {
			c.Buckets[i].OK++
			c.OK++
		} else {
			c.Buckets[i].Failed++
			c.Failed++
		}
	}
	for _, b := range c.Buckets {
		c.Max = max(c.Max, b.OK+b.Failed)
	}
	bw := float64(chartW) / float64(n)
	for i := range c.Buckets {
		b := &c.Buckets[i]
		b.X, b.W = float64(i)*bw+1, bw-2
		if c.Max > 0 {
			b.OKH = float64(chartH) * float64(b.OK) / float64(c.Max)
			b.FailH = float64(chartH) * float64(b.Failed) / float64(c.Max)
		}
		b.OKY = chartH - b.OKH
		b.FailY = b.OKY - b.FailH
		b.Label = fmt.Sprintf("%s: %d delivered, %d failed", b.Start.UTC().Format("15:04"), b.OK, b.Failed)
	}
	total := c.OK + c.Failed
	c.Summary = fmt.Sprintf("No attempts in the last %s.", window)
	if total > 0 {
		c.Summary = fmt.Sprintf("%d attempts in the last %s: %d succeeded, %d failed (%s success).",
			total, window, c.OK, c.Failed, percent(c.OK, total))
	}
	return c
}

func percent(part, total int) string {
	if total == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(part)/float64(total))
}

// Latency is the percentiles of the attempts' latencies; N is how many there were.
type Latency struct {
	N             int
	P50, P90, P99 time.Duration
}

// latencyPercentiles takes the nearest-rank percentiles of attempts that got an answer.
func latencyPercentiles(attempts []Attempt) Latency {
	var ds []time.Duration
	for _, a := range attempts {
		if a.StatusCode != 0 {
			ds = append(ds, time.Duration(a.LatencySeconds*float64(time.Second)))
		}
	}
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(ds)))) - 1
		return ds[max(i, 0)].Round(time.Millisecond)
	}
	return Latency{N: len(ds), P50: rank(0.50), P90: rank(0.90), P99: rank(0.99)}
}
