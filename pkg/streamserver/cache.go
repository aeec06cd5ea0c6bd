package streamserver

import (
	"sync"
	"time"
)

// maxCacheEntries bounds each decision cache; beyond it expired
// entries go first, then everything.
const maxCacheEntries = 4096

// ttlCache keeps values for a time each. Safe for concurrent use.
type ttlCache[V any] struct {
	now func() time.Time

	mu sync.Mutex
	// entries by key; guarded by mu.
	entries map[string]cacheEntry[V]
}

type cacheEntry[V any] struct {
	v   V
	exp time.Time
}

func newTTLCache[V any](now func() time.Time) *ttlCache[V] {
	return &ttlCache[V]{now: now, entries: make(map[string]cacheEntry[V])}
}

// get returns key's value unless it expired.
func (c *ttlCache[V]) get(key string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !c.now().Before(e.exp) {
		var zero V
		return zero, false
	}
	return e.v, true
}

// set keeps v for ttl.
func (c *ttlCache[V]) set(key string, v V, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.entries) >= maxCacheEntries {
		for k, e := range c.entries {
			if !now.Before(e.exp) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= maxCacheEntries {
			clear(c.entries)
		}
	}
	c.entries[key] = cacheEntry[V]{v: v, exp: now.Add(ttl)}
}
