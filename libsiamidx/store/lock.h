/* store/lock.h - one writer process per index. */
#ifndef SX_STORE_LOCK_H
#define SX_STORE_LOCK_H

#include "siamidx.h"

typedef struct sx_lock sx_lock;
/* flock()s DIR/writer.lock and writes our PID in it. Without wait, a held lock
   gives SIAMIDX_ERR_INDEX_LOCKED naming the holder's PID. */
siamidx_status sx_lock_acquire(const char *dir, int wait, sx_lock **out, siamidx_error *err);
void sx_lock_release(sx_lock *l);

#endif /* SX_STORE_LOCK_H */
