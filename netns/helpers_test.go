package netns

import "math/rand/v2"

func mustRule(s string) Rule {
	r, err := ParseRule(s)
	if err != nil {
		panic(err)
	}
	return r
}

func shuffled[T any](r *rand.Rand, xs []T) []T {
	out := append([]T(nil), xs...)
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

func modes(ss []Settings) []Mode {
	var out []Mode
	for _, s := range ss {
		out = append(out, s.Mode)
	}
	return out
}
