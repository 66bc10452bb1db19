package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/workcell/workcell/internal/atomicfile"
)

// PassphraseThrottle is how wrong passphrases back off, per profile, after
// Android's Gatekeeper: FreeTries failures in a row cost nothing; the
// FreeTries-th makes the next try wait Backoff, and each further failure
// doubles the wait, up to BackoffMax. Failed unlocks and failed passphrase
// changes (a wrong old passphrase) count alike; a success resets.
type PassphraseThrottle struct {
	FreeTries  int      `json:"free_tries"`
	Backoff    Duration `json:"backoff"`
	BackoffMax Duration `json:"backoff_max"`
}

func (t PassphraseThrottle) validate() error {
	switch {
	case t.FreeTries < 1:
		return fmt.Errorf("passphrase.free_tries %d: must be at least 1", t.FreeTries)
	case t.Backoff <= 0:
		return fmt.Errorf("passphrase.backoff %s: must be positive", time.Duration(t.Backoff))
	case t.BackoffMax < t.Backoff:
		return fmt.Errorf("passphrase.backoff_max %s: below passphrase.backoff %s", time.Duration(t.BackoffMax), time.Duration(t.Backoff))
	}
	return nil
}

// delay is how long the next try waits after failures wrong passphrases
// in a row.
func (t PassphraseThrottle) delay(failures int) time.Duration {
	if failures < t.FreeTries {
		return 0
	}
	d, limit := time.Duration(t.Backoff), time.Duration(t.BackoffMax)
	for i := t.FreeTries; i < failures && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// passTries is a profile's count of wrong passphrases, kept on disk so
// that restarting the daemon (or the phone) does not reset it.
type passTries struct {
	Failures int       `json:"failures"`
	Last     time.Time `json:"last_failure,omitzero"`
}

// passTriesFile is its file, beside the wrapped key.
const passTriesFile = "passphrase-tries.json"

// wait is how long a try at now must still wait; 0 means it may go on. A
// clock set back never makes the wait longer than the delay itself.
func (s passTries) wait(t PassphraseThrottle, now time.Time) time.Duration {
	d := t.delay(s.Failures)
	if d == 0 {
		return 0
	}
	return min(max(s.Last.Add(d).Sub(now), 0), d)
}

// retryAt is when the next try is allowed; zero when it is now.
func (s passTries) retryAt(t PassphraseThrottle, now time.Time) time.Time {
	if w := s.wait(t, now); w > 0 {
		return now.Add(w)
	}
	return time.Time{}
}

// loadPassTries reads the record; a missing file is no failures. A
// damaged one counts as the free tries used up, so that corrupting it
// (it is root's file, but a disk can flip a bit) gains no tries.
func loadPassTries(path string, t PassphraseThrottle) (passTries, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return passTries{}, nil
	}
	var s passTries
	if err == nil {
		err = json.Unmarshal(b, &s)
	}
	if err != nil || s.Failures < 0 {
		return passTries{Failures: t.FreeTries, Last: time.Now().UTC()}, fmt.Errorf("passphrase tries %s unreadable, counted as %d failures: %v", path, t.FreeTries, err)
	}
	return s, nil
}

// savePassTries writes the record atomically and durably (a try counted
// before the check must survive a power cut during it); no failures
// removes the file.
func savePassTries(path string, s passTries) error {
	if s.Failures == 0 {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("reset passphrase tries: %w", err)
		}
		return nil
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), atomicfile.Options{})
}
