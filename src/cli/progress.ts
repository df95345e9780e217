/** A one-line progress indicator on standard error when it is a terminal; silent otherwise. */
import { color } from './output.ts';

const FRAMES = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

export class Progress {
  readonly #label: string;
  readonly #started = performance.now();
  readonly #timer: NodeJS.Timeout | undefined;
  #frame = 0;

  constructor(label: string) {
    this.#label = label;
    if (process.stderr.isTTY) {
      this.#timer = setInterval(() => this.#draw(), 100);
      this.#timer.unref();
    }
  }

  #draw(): void {
    const seconds = ((performance.now() - this.#started) / 1000).toFixed(1);
    process.stderr.write(
      `\r${FRAMES[this.#frame++ % FRAMES.length]} ${this.#label} ${color('dim', `${seconds}s`)}`,
    );
  }

  #stop(): void {
    if (this.#timer) {
      clearInterval(this.#timer);
      process.stderr.write('\r\u001b[2K');
    }
  }

  done(message: string): void {
    this.#stop();
    const seconds = ((performance.now() - this.#started) / 1000).toFixed(2);
    console.log(`${message} in ${seconds}s`);
  }

  fail(): void {
    this.#stop();
  }
}
