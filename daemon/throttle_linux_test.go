package daemon

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/workcell/workcell/api"
	"github.com/workcell/workcell/images/fscrypt"
)

// The attack: guess passphrases as fast as the daemon answers, and
// restart the daemon (or have it restarted) to reset any count.
func TestPassphraseGuessesAreThrottledAcrossRestarts(t *testing.T) {
	ctx := context.Background()
	d, p := keyDaemon(t)
	key, _ := fscrypt.NewKey()
	if err := fscrypt.StoreKey(ctx, d.stor.keyFile("work"), d.stor.prot, key, []byte("right horse"), fscrypt.WithArgon2(1, 64, 1)); err != nil {
		t.Fatal(err)
	}
	free := p.stor.throttle.FreeTries
	for i := 0; i < free; i++ {
		if _, err := d.loadKey(ctx, p, []byte("wrong")); !errors.Is(err, api.ErrPermission) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	// Now even the right passphrase is refused, unchecked, with a retry-after.
	_, err := d.loadKey(ctx, p, []byte("right horse"))
	if retry, ok := api.RetryAfter(err); !errors.Is(err, api.ErrThrottled) || !ok || retry <= 0 || retry > 30*time.Second {
		t.Fatalf("right passphrase while throttled: %v (retry %v)", err, retry)
	}
	if p.stor.tries.Failures != free || p.status().PassphraseRetryAt == nil {
		t.Fatalf("a refused try changed the count or the status lost the retry time: %+v", p.status())
	}
	// A wrong old passphrase in a passphrase change is throttled alike.
	if _, err := d.SetPassphrase(ctx, "work", []byte("right horse"), []byte("new")); !errors.Is(err, api.ErrThrottled) {
		t.Fatalf("passphrase change while throttled: %v", err)
	}
	// A restarted daemon reads the count back.
	d2, p2 := d, &profile{rec: p.rec}
	d2.profiles["work"] = p2
	d2.cfg = DefaultConfig()
	d2.reconcileTries(p2)
	if _, err := d2.loadKey(ctx, p2, []byte("right horse")); !errors.Is(err, api.ErrThrottled) {
		t.Fatalf("after a restart: %v", err)
	}
	// Once the wait is over (the clock moved on), a right try resets.
	tries := p2.stor.tries
	tries.Last = tries.Last.Add(-31 * time.Second)
	if err := savePassTries(d.stor.triesFile("work"), tries); err != nil {
		t.Fatal(err)
	}
	d2.reconcileTries(p2)
	got, err := d2.loadKey(ctx, p2, []byte("right horse"))
	if err != nil || !got.Equal(key) {
		t.Fatalf("after the wait: %v", err)
	}
	if p2.stor.tries.Failures != 0 || p2.status().PassphraseRetryAt != nil {
		t.Fatalf("a right passphrase did not reset: %+v", p2.status())
	}
	if _, err := os.Stat(d.stor.triesFile("work")); !os.IsNotExist(err) {
		t.Fatalf("tries file after reset: %v", err)
	}
}
