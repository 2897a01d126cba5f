// The page's single EventSource on /events.

// Named events of interest, by the name the page uses. The plural names are
// those of the database channels the server relays (tapeflow_candles →
// candles); both spellings are accepted.
const EVENTS = { candle: 'candle', candles: 'candle', signal: 'signal', signals: 'signal', state: 'state',
  backtest: 'backtest', backtests: 'backtest', order: 'order', orders: 'order', risk: 'risk',
  arbitrage: 'arbitrage' };

/**
 * Connect and keep connected. `onEvent(name, data)` gets every named event;
 * `onStatus` gets 'connecting' | 'connected' | 'reconnecting'; `onResync` is
 * called after every reconnect, because notifications sent while the stream
 * was down are lost and the page must re-read what it shows, and when the
 * server says (event `resync`) that it dropped messages for this client.
 */
export function connectLive({ onEvent, onStatus, onResync }) {
  let source;
  let wasOpen = false;
  let delay = 1000;

  const open = () => {
    onStatus(wasOpen ? 'reconnecting' : 'connecting');
    source = new EventSource('/events');
    source.onopen = () => {
      delay = 1000;
      onStatus('connected');
      if (wasOpen) onResync();
      wasOpen = true;
    };
    source.onerror = () => {
      onStatus(wasOpen ? 'reconnecting' : 'connecting');
      // The browser retries by itself unless the response was unusable (an
      // HTTP error or a wrong content type); then retry here, with backoff.
      if (source.readyState === EventSource.CLOSED) {
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 30000);
      }
    };
    source.addEventListener('resync', () => onResync());
    for (const [wire, name] of Object.entries(EVENTS)) {
      source.addEventListener(wire, (e) => {
        let data;
        try {
          data = JSON.parse(e.data);
        } catch {
          console.warn(`ignoring malformed ${name} event`, e.data);
          return;
        }
        onEvent(name, data);
      });
    }
  };
  open();
}
