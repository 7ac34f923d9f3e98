package engine

// The locks that keep runs of one case, and of one identity in one
// system, from overlapping.

import (
	"context"
	"fmt"
	"sync"

	"github.com/jml-dev/jml/internal/store"
)

// keyLocks are mutexes by key that can be waited for with a deadline,
// dropped when nobody holds or waits.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // holds a token while locked
	refs int
}

// hold takes key's lock, waiting as long as it takes.
func (l *keyLocks) hold(key string) (unlock func()) {
	unlock, _ = l.lock(context.Background(), key)
	return unlock
}

// lock takes key's lock, or returns ctx's error if ctx ends first.
func (l *keyLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*keyLock{}
	}
	kl := l.m[key]
	if kl == nil {
		kl = &keyLock{ch: make(chan struct{}, 1)}
		l.m[key] = kl
	}
	kl.refs++
	l.mu.Unlock()
	drop := func() {
		l.mu.Lock()
		if kl.refs--; kl.refs == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	select {
	case kl.ch <- struct{}{}:
		return func() { <-kl.ch; drop() }, nil
	case <-ctx.Done():
		drop()
		return nil, ctx.Err()
	}
}

// lockWaits is how many call deadlines a run waits for the (identity,
// system) lock: the run holding it may make several calls.
const lockWaits = 5

// lockAccess takes the (identity, system) lock of key, in this process
// and, where the store is shared, across replicas, waiting at most
// lockWaits call deadlines. The returned release frees it once every call
// tracked by calls has returned.
func (e *Engine) lockAccess(ctx context.Context, key string, calls *sync.WaitGroup) (release func(), err error) {
	wait, cancel := context.WithTimeout(ctx, lockWaits*e.callTimeout)
	defer cancel()
	unlock, err := e.accessLocks.lock(wait, key)
	if err != nil {
		return nil, fmt.Errorf("an earlier run for this identity has not finished after %s", lockWaits*e.callTimeout)
	}
	releases := []func(){unlock}
	release = func() {
		// After every call of the run has returned, timed out or not.
		go func() {
			calls.Wait()
			for i := len(releases) - 1; i >= 0; i-- {
				releases[i]()
			}
		}()
	}
	if l, ok := e.store.(store.AccessLocker); ok {
		r, err := l.LockAccess(wait, key)
		if err != nil {
			release()
			return nil, fmt.Errorf("an earlier run for this identity (here or on another replica) has not finished after %s: %v", lockWaits*e.callTimeout, err)
		}
		releases = append(releases, r)
	}
	return release, nil
}
