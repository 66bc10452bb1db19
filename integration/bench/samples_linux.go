package main

import (
	"math"
	"slices"
	"time"
)

// Samples are the timings of one measured operation.
type Samples []time.Duration

// Median is the middle sample (the mean of the two middle ones for an
// even count).
func (s Samples) Median() Figure {
	if len(s) == 0 {
		return Figure{}
	}
	v := slices.Sorted(slices.Values(s))
	n := len(v)
	if n%2 == 1 {
		return Millis(v[n/2])
	}
	return Millis((v[n/2-1] + v[n/2]) / 2)
}

// Quantile is the nearest-rank q quantile: with 50 samples p99 is the
// largest one.
func (s Samples) Quantile(q float64) Figure {
	if len(s) == 0 {
		return Figure{}
	}
	v := slices.Sorted(slices.Values(s))
	i := int(math.Ceil(q*float64(len(v)))) - 1
	return Millis(v[max(0, min(i, len(v)-1))])
}

// timed runs fn and appends its duration to s when it succeeds.
func (s *Samples) timed(fn func() error) error {
	t := time.Now()
	if err := fn(); err != nil {
		return err
	}
	*s = append(*s, time.Since(t))
	return nil
}

// interleave runs a n times and b m times, spreading b's runs evenly among
// a's so that noise on the shared cores hits both.
func interleave(n, m int, a, b func(i int) error) error {
	j := 0
	for i := 0; i < n; i++ {
		if err := a(i); err != nil {
			return err
		}
		for ; j < m && j*n <= i*m; j++ {
			if err := b(j); err != nil {
				return err
			}
		}
	}
	for ; j < m; j++ {
		if err := b(j); err != nil {
			return err
		}
	}
	return nil
}
