// parseRecipe(): the recipe text to its syntax tree, through the parser peggy generates from recipe.peggy at build
// time. Every failure, whatever the input, is a RecipeError with code NP_RECIPE_SYNTAX and a location.

import { ErrorCode } from '../protocol/errors.js';
import type { RecipeAst } from './ast.js';
import { RecipeSource } from './errors.js';
import { parse, SyntaxError as PeggySyntaxError } from './generated/recipe-parser.js';

/**
 * Parses a recipe. `sourceName` names the recipe in error locations (a file name, or `-` for stdin). Does not
 * check limits, text encoding or meaning: checkRecipe() does all of that, and is what callers normally want.
 * Throws RecipeError (NP_RECIPE_SYNTAX).
 */
export function parseRecipe(text: string, sourceName: string): RecipeAst {
  return parseSource(new RecipeSource(text, sourceName));
}

/** parseRecipe() on a RecipeSource, so that check.ts locates its own errors with the same line index. */
export function parseSource(source: RecipeSource): RecipeAst {
  try {
    return parse(source.text, { grammarSource: source.name });
  } catch (error) {
    if (error instanceof PeggySyntaxError) {
      // peggy's message ends in a full stop; ours follow `file:line:column: ` and do not.
      throw source.error(ErrorCode.RecipeSyntax, error.message.replace(/\.$/, ''), error.location.start.offset, { cause: error });
    }
    throw error;
  }
}

