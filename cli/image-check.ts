import sharp, { type Metadata } from 'sharp';

/**
 * What `data check` learns from one encoded image: whether it decodes to 3-channel RGB, and what had to be
 * converted on the way (a CMYK or greyscale JPEG, a PNG named .JPEG), so that the report can say the odd
 * files were handled rather than leave them unmentioned.
 */
export interface ImageCheck {
  /** Why the image cannot be used; undefined when it decodes. */
  readonly problem: string | undefined;
  /** What the image was before conversion to RGB, when it was not a 3-channel JPEG (e.g. "CMYK JPEG", "PNG"). */
  readonly converted: string | undefined;
}

/** Decodes the whole image (a truncated JPEG fails on libjpeg's first warning) and converts it to 3-channel sRGB. */
export async function checkImage(bytes: Buffer): Promise<ImageCheck> {
  let converted: string | undefined;
  try {
    const image = sharp(bytes, { failOn: 'warning' });
    const meta = await image.metadata();
    converted = conversion(meta);
    const { info } = await image.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) return { problem: `decodes to ${info.channels} channels, not 3`, converted };
    return { problem: undefined, converted };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { problem: `does not decode: ${message.trim().split('\n')[0]}`, converted };
  }
}

function conversion(meta: Metadata): string | undefined {
  const format = meta.format === 'jpeg' ? 'JPEG' : (meta.format ?? 'unknown format').toUpperCase();
  const colour = meta.space === 'cmyk' ? 'CMYK ' : meta.channels === 1 || meta.space === 'b-w' ? 'greyscale ' : '';
  const alpha = meta.hasAlpha ? ' with alpha' : '';
  const described = `${colour}${format}${alpha}`;
  return described === 'JPEG' ? undefined : described;
}
